import SwitchboardIO
import SwitchboardWebSocket

/// Drives the shard's WebSocket connections: received bytes through the codec to the handler,
/// messages out (with the slow-consumer policy), keep-alive pings, and the close handshake.
/// Shard thread only.
final class WebSocketConnectionDriver {
    unowned(unsafe) let shard: Shard
    let table: ConnectionTable
    let metrics: ProtocolMetrics
    let slowConsumerPolicy: SlowConsumerPolicy
    /// Set once by the dispatcher, right after the handler is made.
    var worker: WorkerHandler = DefaultWorkerHandler()
    private var events: [WebSocketEvent] = []

    init(shard: Shard, table: ConnectionTable, metrics: ProtocolMetrics, slowConsumerPolicy: SlowConsumerPolicy) {
        self.shard = shard
        self.table = table
        self.metrics = metrics
        self.slowConsumerPolicy = slowConsumerPolicy
    }

    /// The connection switched to WebSocket (the 101 is queued).
    func adopt(_ id: SocketID, _ session: WebSocketSession) {
        table.setPhase(id, .webSocket(session))
        metrics.upgrades.increment()
        metrics.webSocketsOpen.set(metrics.webSocketsOpen.value + 1)
    }

    /// The connection is gone: the handler hears of it once.
    func closed(_ id: SocketID, _ session: WebSocketSession) {
        metrics.webSocketsOpen.set(metrics.webSocketsOpen.value - 1)
        assert(metrics.webSocketsOpen.value >= 0)
        worker.handleSocketClose(socketId: id, token: session.token)
    }

    // MARK: - Receive

    func receive(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer) {
        // Events are collected first and acted on after the codec returned: the handler may
        // answer (send on this socket) from inside handleSocketMessage.
        events.removeAll(keepingCapacity: true)
        session.connection.receive(bytes) { events.append($0) }
        if session.lifecycle == .awaitingPong { session.lifecycle = .open }
        let batch = events
        events.removeAll(keepingCapacity: true)
        for event in batch {
            // The handler may have closed the socket (it stays current until the shard
            // finalizes it; a close only changes the lifecycle).
            assert(table.isCurrent(id))
            switch event {
            case .text(let payload):
                metrics.webSocketMessagesIn.increment()
                worker.handleSocketMessage(.text(String(decoding: payload, as: UTF8.self)), socketId: id, token: session.token)
            case .binary(let payload):
                metrics.webSocketMessagesIn.increment()
                worker.handleSocketMessage(.binary(payload), socketId: id, token: session.token)
            case .write(let frame):
                // A pong, or the close frame that ends the connection (then `.closed` or
                // `.failed` follows at once, with no handler call in between).
                if shard.send(id, OutboundBytes(frame)) == .overLimit { shard.close(id, mode: .immediately) }
            case .pong:
                break
            case .closed:
                // The close handshake is complete: nothing more is expected from the client,
                // and nothing may follow the close frame the codec queued.
                session.lifecycle = .closeQueued
                shard.close(id, mode: .afterFlushNoLinger)
            case .failed(let code, _):
                session.lifecycle = .closeQueued
                metrics.webSocketProtocolErrors.increment()
                if code == SwitchboardWebSocket.WebSocketCloseCode.messageTooBig { metrics.webSocketTooBig.increment() }
                shard.close(id, mode: .afterFlush)
            }
        }
    }

    // MARK: - Send

    /// Sends a message on a WebSocket of this shard: exact.
    func send(_ id: SocketID, _ message: SocketMessage) -> LocalSendResult {
        // Not `connection.isOpen`: the codec may already have failed on input that arrived in
        // the same read as the message being answered; the answer still goes before the close.
        guard let session = table.webSocket(id), session.lifecycle.maySend, shard.isOpen(id) else { return .closed }
        let frame: OutboundBytes
        if session.compresses {
            let bytes: [UInt8]
            switch message {
            case .text(var s):
                bytes = s.withUTF8 { session.connection.encodeMessage(UnsafeRawBufferPointer($0), opcode: .text) }
            case .binary(let b):
                bytes = b.withUnsafeBytes { session.connection.encodeMessage($0, opcode: .binary) }
            }
            frame = OutboundBytes(bytes)
        } else {
            frame = .webSocketFrame(message)
        }
        return queue(frame, on: id)
    }

    /// Queues an encoded frame, applying the slow-consumer policy at the limit.
    @inline(__always) func queue(_ frame: OutboundBytes, on id: SocketID) -> LocalSendResult {
        switch shard.send(id, frame) {
        case .queued:
            metrics.webSocketMessagesOut.increment()
            return .queued
        case .notOpen:
            return .closed
        case .overLimit:
            applySlowConsumerPolicy(id)
            return .dropped
        }
    }

    /// Whether a channel frame may go to this subscriber: not once a close frame is queued
    /// (ours or the codec's). A socket still in its upgrade request has no session yet.
    @inline(__always) func mayDeliver(_ id: SocketID) -> Bool {
        // Subscribers leave their channels when they close: every id here is current.
        assert(table.isCurrent(id), "a closed socket is still subscribed")
        guard case .webSocket(let session) = table.slots[id.slot].phase else { return true }
        return session.lifecycle.maySend
    }

    /// A socket's send queue is at its limit: drop the message (counted) or close with 1013.
    func applySlowConsumerPolicy(_ id: SocketID) {
        switch slowConsumerPolicy {
        case .drop:
            metrics.webSocketMessagesDropped.increment()
        case .close:
            metrics.webSocketSlowConsumersClosed.increment()
            close(id, code: .tryAgainLater, reason: "slow consumer", force: true)
        }
    }

    // MARK: - Close

    /// Server-initiated close: a close frame, then the client's close (or the request timeout).
    /// `force` drops nothing but lets the close frame pass the queue limit (slow consumer).
    /// Returns whether a close handshake started.
    @discardableResult
    func close(_ id: SocketID, code: WebSocketCloseCode, reason: String, force: Bool = false) -> Bool {
        guard let session = table.webSocket(id), session.lifecycle.maySend, session.connection.isOpen else { return false }
        let frame = session.connection.initiateClose(code: code.rawValue, reason: reason)
        assert(!frame.isEmpty, "an open codec always makes a close frame")
        session.lifecycle = .closeSent
        // `force`: the queue is at its limit (slow consumer). The close frame still goes behind
        // what is queued; the connection then has the linger timeout to drain, after which it
        // is cut.
        if shard.send(id, OutboundBytes(frame), overLimit: force) != .queued {
            shard.close(id, mode: .immediately)
            return true
        }
        if force {
            shard.close(id, mode: .afterFlush)
        } else {
            shard.armRequestTimer(id)
        }
        return true
    }

    // MARK: - Timers

    func timedOut(_ id: SocketID, _ session: WebSocketSession, _ timer: ConnectionTimer) {
        switch (timer, session.lifecycle) {
        case (.request, _):
            // The client did not answer our close frame in time.
            shard.close(id, mode: .immediately)
        case (.idle, .open):
            session.lifecycle = .awaitingPong
            _ = shard.send(id, OutboundBytes(WebSocketConnection.pingFrame([])))
            shard.touch(id)
        case (.idle, .awaitingPong), (.idle, .closeSent):
            metrics.webSocketPingTimeouts.increment()
            shard.close(id, mode: .immediately)
        case (.idle, .closeQueued):
            shard.close(id, mode: .immediately)
        }
    }
}
