/// Runs a broker client's connection-level callbacks (`onIncomingChannel`, `onConnected`,
/// `onDisconnected`, `onReconnected`, a channel's `onClosed` when nobody consumes the channel)
/// one at a time, in the order they were queued, on one task per client: the replacement for a
/// serial `DispatchQueue`, so that the SDK's concurrency is tasks alone.
///
/// Not on it: channel payloads. Those go through each channel's bounded
/// ``ChannelMessages`` sequence, and `onMessage` is a task consuming it; this queue carries
/// one entry per protocol event (a channel opened, a connection ended), never one per message,
/// so it needs no bound of its own.
///
/// Thread rules: ``async(_:)`` may be called from any thread or task; the work runs on the
/// queue's task, never concurrently with other work of the same queue. Work may suspend (to
/// wait for a channel's consumer to finish, so that `onDisconnected` follows the last
/// `onMessage`); later work waits behind it. The task ends when the queue is released (its
/// stream finishes).
final class CallbackQueue: Sendable {
    private let continuation: AsyncStream<@Sendable () async -> Void>.Continuation

    init() {
        let (stream, continuation) = AsyncStream<@Sendable () async -> Void>.makeStream()
        self.continuation = continuation
        // The task holds the stream only, not the queue: releasing the queue finishes both.
        Task {
            for await work in stream { await work() }
        }
    }

    deinit { continuation.finish() }

    /// Queues `work` after everything queued before it.
    func async(_ work: @escaping @Sendable () async -> Void) {
        continuation.yield(work)
    }
}
