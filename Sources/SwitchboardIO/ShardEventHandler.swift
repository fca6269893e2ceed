/// What a protocol layer receives from its shard. All calls come on the shard's thread.
///
/// The I/O layer knows nothing of HTTP or WebSocket: it hands over bytes and lifecycle events,
/// and takes bytes to send back through `Shard.send`.
package protocol ShardEventHandler: AnyObject {
    /// Once, on the shard thread, before any connection.
    func shardStarted(_ shard: Shard)
    /// A socket was accepted and given a slot.
    func connectionOpened(_ id: SocketID)
    /// Bytes arrived. The buffer is valid only during the call: copy what must be kept.
    /// Called only while the connection is open (not draining, lingering or closing: `deliver`,
    /// the resume path and the TLS read loop check it right before each call), so a handler
    /// may take the connection as open until it runs code of its own that could close it.
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer)
    /// A timer of the connection ran out. The connection stays open unless the handler closes it.
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer)
    /// The connection is gone (any cause). Called exactly once per opened connection; its id is
    /// stale from now on.
    func connectionClosed(_ id: SocketID)
    /// The broker is shutting down: finish what is in flight and close connections. The shard
    /// force-closes whatever is still open when the grace period ends.
    func shardDraining(_ shard: Shard)
    /// Once per loop turn, after events were dispatched: drain mailboxes, flush batched work.
    func loopTurn(_ shard: Shard)
    /// Asked right before the shard sleeps (after its doorbell is armed): true when a mailbox
    /// of the handler has work, so the shard must not sleep.
    func hasPendingWork(_ shard: Shard) -> Bool
    /// Every `tickMilliseconds`.
    func tick(_ shard: Shard, nowMilliseconds: Int64)
    /// Last in each loop turn (after its sends, timers and closes) and once after the loop:
    /// the handler publishes counts it kept for the turn (see `TurnCounts`).
    func turnEnded(_ shard: Shard)
    /// Last call on the shard thread before it exits.
    func shardStopped(_ shard: Shard)
}

extension ShardEventHandler {
    package func shardStarted(_ shard: Shard) {}
    package func shardDraining(_ shard: Shard) {}
    package func loopTurn(_ shard: Shard) {}
    package func hasPendingWork(_ shard: Shard) -> Bool { false }
    package func tick(_ shard: Shard, nowMilliseconds: Int64) {}
    package func turnEnded(_ shard: Shard) {}
    package func shardStopped(_ shard: Shard) {}
}

/// Result of queueing bytes on a connection.
package enum SendResult: Sendable, Equatable {
    case queued
    /// Queueing would exceed `maxSendQueueBytes`; nothing was queued.
    case overLimit
    /// The id is stale or the connection is closing; nothing was queued.
    case notOpen
}

/// How to close a connection.
package enum CloseMode: Sendable {
    /// Send what is queued, shut down the write side, read and discard until the peer closes
    /// or the linger timeout passes.
    case afterFlush
    /// Send what is queued, then close at once (no lingering): for protocols whose own close
    /// handshake already finished, so no more input is expected.
    case afterFlushNoLinger
    /// Drop what is queued and close now.
    case immediately
}
