import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Where an outbound connection goes and how it retries.
///
/// The host is an IPv4 or IPv6 literal: a shard never blocks, and name resolution does
/// (`getaddrinfo`), so whoever configures the connection resolves names first, off the shard.
package struct OutboundOptions: Sendable, Equatable {
    package var host: String
    package var port: Int
    /// A connect not finished after this long is abandoned (and retried after the backoff).
    package var connectTimeoutMilliseconds: Int = 2_000
    /// While the owner awaits input (`OutboundConnection.setAwaitingInput(true)`), a connection
    /// that receives nothing for this long is closed (and reconnected).
    package var readTimeoutMilliseconds: Int = 5_000
    /// First delay before reconnecting; doubles with each consecutive failure...
    package var initialBackoffMilliseconds: Int = 100
    /// ...up to this.
    package var maxBackoffMilliseconds: Int = 5_000
    /// Fraction (0...1) of each delay drawn at random and taken off, so that nodes that lost
    /// a server together do not come back in lock step.
    package var jitter: Double = 0.5

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// A problem with the values, or nil.
    package func validate() -> String? {
        var probe = in6_addr()
        if inet_pton(AF_INET, host, &probe) != 1 && inet_pton(AF_INET6, host, &probe) != 1 { return "host '\(host)' is not an IPv4 or IPv6 literal" }
        if port < 1 || port > 65_535 { return "port must be 1...65535" }
        if connectTimeoutMilliseconds < 1 || readTimeoutMilliseconds < 1 { return "connect and read timeouts must be >= 1 ms" }
        if initialBackoffMilliseconds < 1 || maxBackoffMilliseconds < initialBackoffMilliseconds { return "backoff must be 1 <= initial <= max" }
        if !(0...1).contains(jitter) { return "jitter must be 0...1" }
        return nil
    }

    /// The delay before attempt `failures + 1`, after `failures` (>= 1) consecutive failures:
    /// `initial * 2^(failures - 1)` capped at the maximum, less a random part of up to
    /// `jitter` of it.
    package func backoffMilliseconds(afterFailures failures: Int, random: Double) -> Int64 {
        precondition(failures >= 1 && (0...1).contains(random))
        let exponent = min(failures - 1, 30)
        let full = min(Int64(maxBackoffMilliseconds), Int64(initialBackoffMilliseconds) << Int64(exponent))
        let taken = Int64(Double(full) * jitter * random)
        return max(1, full - taken)
    }
}

/// Why an outbound connection is not (or no longer) connected.
package enum OutboundDisconnect: Sendable, Equatable {
    /// The connect failed (`errno`: ECONNREFUSED, ENETUNREACH...).
    case connectFailed(errno: Int32)
    /// The connect did not finish within `connectTimeoutMilliseconds`.
    case connectTimeout
    /// Nothing arrived within `readTimeoutMilliseconds` while the owner awaited input.
    case readTimeout
    /// The peer closed, or the socket failed.
    case closed
    /// The owner asked (`reconnect()`), e.g. after a protocol error.
    case dropped
    /// The shard had no free connection slot.
    case noSlot
}

/// What an outbound connection tells its owner. All calls come on the shard's thread.
package protocol OutboundConnectionDelegate: AnyObject {
    /// Connected: `send` works from now on.
    func outboundConnected(_ connection: OutboundConnection)
    /// Bytes arrived. The buffer is valid only during the call.
    func outboundReceived(_ connection: OutboundConnection, _ bytes: UnsafeRawBufferPointer)
    /// A connect failed or the connection ended. `retryInMilliseconds` is when the next
    /// attempt starts, nil when there is none (closed for good, or the shard is draining).
    func outboundDisconnected(_ connection: OutboundConnection, _ reason: OutboundDisconnect, retryInMilliseconds: Int64?)
}

/// A TCP client connection a shard owns, on the shard's own ring or epoll set: connects
/// without blocking, reconnects with exponential backoff and jitter, enforces connect and read
/// timeouts. Once connected it is an ordinary connection slot of the shard (same send queue,
/// receive path and limits as an accepted socket), whose events go to its delegate instead of
/// the shard's handler.
///
/// Shard thread only (opened with `Shard.openOutbound`). Timers run on the shard's tick, so
/// their resolution is `tickMilliseconds`.
package final class OutboundConnection {
    /// Lifecycle; only `closed` is final.
    package enum State: Equatable {
        /// Waiting for the backoff to pass before the next attempt.
        case waiting(retryAtMilliseconds: Int64)
        /// A non-blocking connect is on its way.
        case connecting(fd: Int32, deadlineMilliseconds: Int64)
        /// Connected, as the shard's connection `id`.
        case connected(SocketID)
        /// Closed for good (`close()`, or the shard drains).
        case closed
    }

    package let options: OutboundOptions
    unowned(unsafe) package let shard: Shard
    /// Not retained: the owner holds the connection.
    package weak var delegate: OutboundConnectionDelegate?
    /// Position in the shard's list (the token of connect completions).
    let index: Int
    package private(set) var state: State
    /// This connection's current attempt, numbered shard-wide (`Shard.outboundAttempts`): a
    /// completion of an abandoned attempt is recognised and ignored.
    private(set) var attempt: UInt32 = 0
    /// Consecutive failed attempts (0 once connected): the backoff's exponent.
    package private(set) var consecutiveFailures = 0
    /// `consecutiveFailures` before the last connect: `handshakeRefused()` restores it, so a
    /// peer that accepts the socket but refuses the handshake backs off like one that is down.
    private var failuresBeforeConnect = 0
    /// Why the connected socket is being closed, when we close it (nil: the peer did).
    private var closeReason: OutboundDisconnect?
    private var awaitingInput = false
    private var readDeadlineMilliseconds: Int64 = .max

    init(shard: Shard, index: Int, options: OutboundOptions, delegate: OutboundConnectionDelegate) {
        self.shard = shard
        self.index = index
        self.options = options
        self.delegate = delegate
        state = .waiting(retryAtMilliseconds: shard.nowMilliseconds)
    }

    /// Connected and not being dropped (after `reconnect()` or a read timeout the slot may
    /// take a moment to close; it no longer counts as connected meanwhile). Nor once the shard
    /// began closing the socket (the server's EOF or an error, read this turn), which it tells
    /// this connection only when it finalizes the slot at the end of the turn: a send in
    /// between would be refused as `.notOpen`, and the owner would count it as something else
    /// than "not connected" (a cluster publish as over its limit, seen when Redis was killed
    /// on a loaded machine).
    package var isConnected: Bool {
        guard let id = linkedID else { return false }
        return shard.isOpen(id)
    }

    /// The socket while connected and not dropped by this side, whether or not the shard is
    /// closing it yet: a refused handshake still sets the backoff when the server hung up in
    /// the same read.
    private var linkedID: SocketID? {
        if case .connected(let id) = state, closeReason == nil { return id }
        return nil
    }

    /// Queues bytes (written at the end of the turn). `.notOpen` while not connected;
    /// `.overLimit` at `maxSendQueueBytes` or the shard's budget, unless `overLimit` (as in
    /// `Shard.send`: for small control messages that must go).
    @discardableResult
    package func send(_ bytes: OutboundBytes, overLimit allowed: Bool = false) -> SendResult {
        shard.assertOnShardThread()
        guard case .connected(let id) = state else { return .notOpen }
        return shard.send(id, bytes, overLimit: allowed)
    }

    /// Whether the owner awaits input (a reply): then the read timeout runs, restarted by
    /// every arrival.
    package func setAwaitingInput(_ awaiting: Bool) {
        shard.assertOnShardThread()
        guard awaiting != awaitingInput else { return }
        awaitingInput = awaiting
        readDeadlineMilliseconds = awaiting ? readDeadline() : .max
    }

    /// Drops the connection (e.g. the peer broke the protocol) and reconnects after the backoff.
    package func reconnect() {
        shard.assertOnShardThread()
        drop(.dropped)
    }

    /// Drops the connection because the peer refused the owner's handshake (e.g. Redis AUTH):
    /// reconnects with the backoff continuing from before this connect, not from the start.
    package func handshakeRefused() {
        shard.assertOnShardThread()
        guard linkedID != nil else { return }
        consecutiveFailures = failuresBeforeConnect
        drop(.dropped)
    }

    /// Closes for good: no event follows but the last `outboundDisconnected` (when connected).
    package func close() {
        shard.assertOnShardThread()
        switch state {
        case .closed: return
        case .waiting:
            state = .closed
        case .connecting(let fd, _):
            shard.unwatchConnect(fd: fd, index: index, attempt: attempt)
            Glibc.close(fd)
            state = .closed
        case .connected(let id):
            closeReason = .dropped
            state = .closed
            shard.close(id, mode: .immediately)
        }
    }

    /// Closes for good once what is queued is written (a last command the peer must get,
    /// e.g. a cluster node's leave; `close()` drops it): no event follows but the last
    /// `outboundDisconnected`. Not connected: `close()`.
    package func closeAfterFlush() {
        shard.assertOnShardThread()
        guard case .connected(let id) = state else { return close() }
        closeReason = .dropped
        state = .closed
        shard.close(id, mode: .afterFlushNoLinger)
    }

    // MARK: - Shard side

    /// Starts an attempt now (the shard calls it when the backoff has passed).
    func startAttempt() {
        shard.outboundAttempts = (shard.outboundAttempts &+ 1) & SocketID.generationMask
        attempt = shard.outboundAttempts
        var inProgress: Int32 = 0
        let fd = sb_connect_tcp(options.host, Int32(options.port), &inProgress)
        if fd < 0 {
            failed(.connectFailed(errno: -fd))
        } else if inProgress == 0 {
            established(fd)
        } else {
            state = .connecting(fd: fd, deadlineMilliseconds: shard.nowMilliseconds + Int64(options.connectTimeoutMilliseconds))
            shard.watchConnect(fd: fd, index: index, attempt: attempt)
        }
    }

    /// The backend saw the socket of attempt `completed` become writable (or fail).
    func connectReady(attempt completed: UInt32) {
        guard case .connecting(let fd, _) = state, completed == attempt else { return }  // abandoned attempt
        shard.unwatchConnect(fd: fd, index: index, attempt: attempt, completed: true)
        let error = sb_socket_error(fd)
        if error == 0 {
            established(fd)
        } else {
            Glibc.close(fd)
            failed(.connectFailed(errno: error < 0 ? -error : error))
        }
    }

    private func established(_ fd: Int32) {
        // `adopt` answers with `adopted(_:)` or `adoptRefused()` before it returns.
        state = .waiting(retryAtMilliseconds: .max)
        shard.adopt(fd: fd, outbound: self)
    }

    func adopted(_ id: SocketID) {
        state = .connected(id)
        failuresBeforeConnect = consecutiveFailures
        consecutiveFailures = 0
        closeReason = nil
        awaitingInput = false
        readDeadlineMilliseconds = .max
        shard.metrics.outboundConnects.increment()
        delegate?.outboundConnected(self)
    }

    /// The read deadline for input awaited from now. One millisecond is added because the
    /// shard's clock is whole milliseconds read at the start of the turn: a deadline from it
    /// alone could fire up to 1 ms before the timeout has really passed.
    private func readDeadline() -> Int64 {
        shard.nowMilliseconds + Int64(options.readTimeoutMilliseconds) + 1
    }
    func adoptRefused() { failed(.noSlot) }

    func received(_ bytes: UnsafeRawBufferPointer) {
        if awaitingInput { readDeadlineMilliseconds = readDeadline() }
        delegate?.outboundReceived(self, bytes)
    }

    /// The connected socket is gone (the shard finalized its slot).
    func slotClosed() {
        let reason = closeReason ?? .closed
        closeReason = nil
        awaitingInput = false
        readDeadlineMilliseconds = .max
        if state == .closed {
            delegate?.outboundDisconnected(self, reason, retryInMilliseconds: nil)
            return
        }
        failed(reason)
    }

    /// Runs on the shard's tick: connect timeout, read timeout, retry.
    func runTimers(now: Int64) {
        switch state {
        case .waiting(let at) where now >= at:
            startAttempt()
        case .connecting(let fd, let deadline) where now >= deadline:
            shard.unwatchConnect(fd: fd, index: index, attempt: attempt)
            Glibc.close(fd)
            failed(.connectTimeout)
        case .connected where awaitingInput && now >= readDeadlineMilliseconds:
            shard.metrics.outboundReadTimeouts.increment()
            drop(.readTimeout)
        default:
            break
        }
    }

    private func drop(_ reason: OutboundDisconnect) {
        switch state {
        case .connected(let id):
            closeReason = reason
            shard.close(id, mode: .immediately)  // `slotClosed` follows when the slot is freed
        case .connecting(let fd, _):
            shard.unwatchConnect(fd: fd, index: index, attempt: attempt)
            Glibc.close(fd)
            failed(reason)
        case .waiting, .closed:
            break
        }
    }

    private func failed(_ reason: OutboundDisconnect) {
        assert(state != .closed)
        shard.metrics.outboundFailures.increment()
        consecutiveFailures += 1
        if shard.lifecycleState != .running {
            state = .closed
            delegate?.outboundDisconnected(self, reason, retryInMilliseconds: nil)
            return
        }
        let delay = options.backoffMilliseconds(afterFailures: consecutiveFailures, random: Double.random(in: 0...1))
        state = .waiting(retryAtMilliseconds: shard.nowMilliseconds + delay)
        delegate?.outboundDisconnected(self, reason, retryInMilliseconds: delay)
    }
}

extension Shard {
    /// Opens a client connection owned by this shard; the first attempt starts at once.
    /// Shard thread only; the shard must be running.
    package func openOutbound(_ options: OutboundOptions, delegate: OutboundConnectionDelegate) -> OutboundConnection {
        assertOnShardThread()
        precondition(options.validate() == nil, "invalid outbound options: \(options.validate() ?? "")")
        let connection = OutboundConnection(shard: self, index: outbound.count, options: options, delegate: delegate)
        outbound.append(connection)
        connection.startAttempt()
        return connection
    }

    /// The tick's part for outbound connections.
    func runOutboundTimers(now: Int64) {
        for connection in outbound { connection.runTimers(now: now) }
        if outbound.last?.state == .closed { compactOutbound() }
    }

    /// Graceful shutdown: outbound connections close (they would keep the shard from stopping).
    func closeOutbound() {
        for connection in outbound { connection.close() }
    }

    /// Forgets the connections once all are closed. Not earlier: an index is the token of a
    /// connect completion, so indices stay stable while any connection lives.
    private func compactOutbound() {
        guard outbound.allSatisfy({ $0.state == .closed }) else { return }
        outbound.removeAll()
    }

    func outboundConnectReady(index: Int, attempt: UInt32) {
        guard index < outbound.count else { return }
        outbound[index].connectReady(attempt: attempt)
    }
}
