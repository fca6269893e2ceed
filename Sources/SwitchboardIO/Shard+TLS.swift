import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// What a shard keeps for its TLS connections: the context store, the count of handshakes
/// running (bounded) and one decryption buffer (plaintext is handed to the protocol layer
/// during the call only, like received bytes on the plain path).
final class TLSShardState {
    let store: TLSContextStore
    @exclusivity(unchecked) var handshakesInFlight = 0
    let scratchBytes = 16_384 + 256
    let scratch: UnsafeMutableRawPointer
    /// Where corked messages are joined before one `SSL_write` (one full TLS record). Not
    /// `scratch`: a handler may close a connection (and so flush its cork) while it still reads
    /// the plaintext it was handed in `scratch`.
    static let corkScratchBytes = 16_384
    let corkScratch: UnsafeMutableRawPointer
    /// The handshake deadlines (their own list: every entry has the handshake timeout).
    @exclusivity(unchecked) var handshakeTimers: TimerList

    init(store: TLSContextStore, maxConnections: Int) {
        self.store = store
        scratch = .allocate(byteCount: scratchBytes, alignment: 64)
        corkScratch = .allocate(byteCount: Self.corkScratchBytes, alignment: 64)
        handshakeTimers = TimerList(capacity: maxConnections, durationMilliseconds: store.configuration.handshakeTimeoutMilliseconds)
    }

    deinit {
        scratch.deallocate()
        corkScratch.deallocate()
        handshakeTimers.deallocate()
    }
}

/// The TLS layer between the shard's socket and its protocol handler. The plain path does not
/// come here: each hook in `Shard` is one test of `connections[slot].tls` being nil.
///
/// Received ciphertext is fed to the connection's `TLSSession`; the handshake advances; once
/// established, decrypted plaintext goes to `handler.connectionReceived`. `Shard.send` corks the
/// plaintext; the flush (`tlsUncork`) encrypts it and queues the ciphertext, so the send queue,
/// its limit and the backends' vectored sends see ciphertext only. (Who makes the records after
/// a TLS 1.3 handshake, OpenSSL or Switchboard's own record layer, is `COpenSSL`'s business:
/// the calls here are the same.)
extension Shard {
    /// The answer to plaintext HTTP sent to the TLS port (as nginx does), before closing.
    static let plaintextOnTLSPortResponse: OutboundBytes = {
        let body = "This port speaks TLS: use https:// or wss://.\n"
        return OutboundBytes("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
    }()

    /// Whether a TLS socket may be adopted now (false: the handshake cap is reached, counted).
    func tlsMayAdopt() -> Bool {
        guard let state = tlsState else { return false }
        if state.handshakesInFlight >= state.store.configuration.maxHandshakesInFlightPerShard {
            tlsMetrics.handshakesRejected.increment()
            return false
        }
        return true
    }

    /// Gives a freshly adopted slot its TLS session and starts the handshake clock. false when
    /// OpenSSL could not make a session.
    func tlsAttach(_ slot: Int) -> Bool {
        guard let state = tlsState,
              let session = TLSSession(context: state.store.context, recordLayer: state.store.configuration.recordLayer)
        else { return false }
        connections[slot].tls = session
        session.holdsHandshakePlace = true
        state.handshakesInFlight += 1
        tlsMetrics.handshakesInFlight.set(state.handshakesInFlight)
        state.handshakeTimers.prepare(slot: slot)
        state.handshakeTimers.arm(slot, now: nowMilliseconds)
        return true
    }

    /// The slot is being freed: a handshake that never finished gives its place back.
    func tlsDetach(_ slot: Int) {
        guard let session = connections[slot].tls, let state = tlsState else { return }
        if session.holdsHandshakePlace { endHandshake(state, slot, session) }
        let keyUpdates = sb_tls_key_updates(session.connection)
        if keyUpdates > 0 { tlsMetrics.keyUpdates.increment(by: Int(keyUpdates)) }
        connections[slot].tls = nil
    }

    private func endHandshake(_ state: TLSShardState, _ slot: Int, _ session: TLSSession) {
        assert(session.holdsHandshakePlace)
        session.holdsHandshakePlace = false
        state.handshakeTimers.cancel(slot)
        state.handshakesInFlight -= 1
        assert(state.handshakesInFlight >= 0)
        tlsMetrics.handshakesInFlight.set(state.handshakesInFlight)
    }

    /// Closes the connections whose handshake ran out of time (a client that stopped
    /// mid-handshake or sent a truncated ClientHello).
    func tlsRunTimers(now: Int64) {
        guard let state = tlsState else { return }
        while let slot = state.handshakeTimers.popExpired(now: now) {
            tlsMetrics.handshakeTimeouts.increment()
            beginClose(slot)
        }
    }

    /// Received ciphertext of a TLS connection (state `.open`).
    func tlsDeliver(_ slot: Int, _ session: TLSSession, _ bytes: UnsafeRawBufferPointer) {
        // What the handler sent before this input is encrypted before reading it can write
        // anything (an alert, a key update) or end the session (close_notify), as without the
        // cork.
        if !session.corked.isEmpty { tlsUncork(slot, session, scheduling: true) }
        if case .handshaking(let sawInput) = session.phase, !sawInput {
            session.phase = .handshaking(sawInput: true)
            // Every TLS connection begins with a handshake record (content type 22).
            guard bytes.first == 0x16 else {
                rejectNotTLS(slot, bytes)
                return
            }
        }
        guard case .handshaking = session.phase else {
            if session.isEstablished { feedAndRead(slot, session, bytes) }
            return
        }
        guard sb_tls_feed(session.connection, bytes.baseAddress, bytes.count) == Int32(bytes.count) else {
            handshakeFailed(slot, session)
            return
        }
        switch sb_tls_handshake(session.connection) {
        case 1:
            session.phase = .established
            if let state = tlsState { endHandshake(state, slot, session) }
            tlsMetrics.handshakes.increment()
            if sb_tls_session_reused(session.connection) == 1 { tlsMetrics.resumed.increment() }
            if sb_tls_uses_own_records(session.connection) == 1 { tlsMetrics.ownRecordSessions.increment() }
            let early = session.pendingPlaintext
            session.pendingPlaintext = []
            for b in early where !session.write(b) {
                tlsRecordFailed(slot)
                return
            }
            // The client's first request may have come in the same segment as its Finished.
            readPlaintext(slot, session)
        case 0:
            queueCiphertext(slot, session)
        default:
            handshakeFailed(slot, session)
        }
    }

    private func feedAndRead(_ slot: Int, _ session: TLSSession, _ bytes: UnsafeRawBufferPointer) {
        guard sb_tls_feed(session.connection, bytes.baseAddress, bytes.count) == Int32(bytes.count) else {
            tlsRecordFailed(slot)
            return
        }
        readPlaintext(slot, session)
    }

    /// Decrypts what the read BIO holds and hands it to the protocol layer, record by record.
    private func readPlaintext(_ slot: Int, _ session: TLSSession) {
        guard let state = tlsState else { return }
        let id = socketID(slot)
        while connections[slot].state == .open {
            let n = sb_tls_read(session.connection, state.scratch, state.scratchBytes)
            if n > 0 {
                handler.connectionReceived(id, UnsafeRawBufferPointer(start: state.scratch, count: Int(n)))
                // Usually one record came in and was read whole: the read that would only
                // answer "needs more input" is skipped.
                if sb_tls_has_input(session.connection) == 0 { break }
                continue
            }
            if n == 0 { break }
            if n == -1 {
                // close_notify: the peer is done, as EOF on the plain path.
                session.phase = .finished
                queueCiphertext(slot, session)
                beginClose(slot)
                return
            }
            tlsRecordFailed(slot)
            return
        }
        if sb_tls_renegotiation_attempts(session.connection) > 0 {
            tlsMetrics.renegotiationsRefused.increment()
            session.phase = .finished
            queueCiphertext(slot, session)  // OpenSSL's no_renegotiation alert
            close(socketID(slot), mode: .afterFlushNoLinger)
            return
        }
        // Reads can produce output too (TLS 1.3 tickets, key updates, alerts).
        queueCiphertext(slot, session)
    }

    /// A handshake that will not finish gives its place and its timer back now: the
    /// connection may still be flushing or lingering, and must not be counted as a timeout too.
    private func abandonHandshake(_ slot: Int, _ session: TLSSession) {
        session.phase = .finished
        if session.holdsHandshakePlace, let state = tlsState { endHandshake(state, slot, session) }
    }

    private func rejectNotTLS(_ slot: Int, _ bytes: UnsafeRawBufferPointer) {
        if let session = session(slot) { abandonHandshake(slot, session) }
        // An HTTP method starts with an upper-case letter: answer in plaintext, as nginx does.
        if let first = bytes.first, first >= UInt8(ascii: "A") && first <= UInt8(ascii: "Z") {
            tlsMetrics.plaintextRejected.increment()
            connections[slot].queue.append(Self.plaintextOnTLSPortResponse)
            scheduleFlush(slot)
            close(socketID(slot), mode: .afterFlush)
        } else {
            tlsMetrics.handshakeFailures.increment()
            beginClose(slot)
        }
    }

    private func session(_ slot: Int) -> TLSSession? { connections[slot].tls }

    private func handshakeFailed(_ slot: Int, _ session: TLSSession) {
        tlsMetrics.handshakeFailures.increment()
        _ = TLSSession.lastError()  // clears this thread's OpenSSL error queue
        abandonHandshake(slot, session)
        // OpenSSL wrote an alert saying why: send it, then close without lingering.
        queueCiphertext(slot, session)
        close(socketID(slot), mode: .afterFlushNoLinger)
    }

    private func tlsRecordFailed(_ slot: Int) {
        tlsMetrics.recordErrors.increment()
        _ = TLSSession.lastError()
        connections[slot].tls?.phase = .finished
        if let s = connections[slot].tls { queueCiphertext(slot, s) }
        close(socketID(slot), mode: .afterFlushNoLinger)
    }

    /// Moves the ciphertext OpenSSL produced into the send queue (and schedules its flush
    /// unless `scheduling` is false: the flush calling it submits the queue itself).
    func queueCiphertext(_ slot: Int, _ session: TLSSession, scheduling: Bool = true) {
        let st = connections[slot].state
        guard st == .open || st == .draining else { return }
        if let out = session.takeCiphertext() {
            connections[slot].queue.append(out)
            if scheduling { scheduleFlush(slot) }
        }
    }

    /// `Shard.send` for a TLS connection: corks the plaintext until the flush (before the
    /// handshake ends: keeps it until it does). The caller checked the limits, counting what is
    /// corked (`admitSend`).
    func tlsEnqueue(_ slot: Int, _ session: TLSSession, _ bytes: OutboundBytes) {
        assertOnShardThread()
        switch session.phase {
        case .handshaking:
            session.pendingPlaintext.append(bytes)
        case .established:
            session.cork(bytes)
            scheduleFlush(slot)
        case .finished:
            break
        }
    }

    /// Encrypts what is corked, in send order, in as few records as fit (16 KiB each), and
    /// queues the ciphertext. A session that ended meanwhile drops it (as a send after the end).
    func tlsUncork(_ slot: Int, _ session: TLSSession, scheduling: Bool) {
        assertOnShardThread()
        guard !session.corked.isEmpty else { return }
        guard session.isEstablished, let state = tlsState else {
            session.clearCorked()
            return
        }
        var written = true
        if session.corked.count == 1 {
            // An echo's reply, a lone message: encrypted where it is.
            written = session.write(session.corked[0])
        } else {
            let room = TLSShardState.corkScratchBytes
            let scratch = state.corkScratch
            var used = 0
            for bytes in session.corked where written {
                var offset = 0
                let count = bytes.count
                while offset < count && written {
                    let n = min(count - offset, room - used)
                    (scratch + used).copyMemory(from: bytes.base + offset, byteCount: n)
                    used += n
                    offset += n
                    if used == room {
                        written = session.write(UnsafeRawPointer(scratch), count: used)
                        used = 0
                    }
                }
            }
            if written && used > 0 { written = session.write(UnsafeRawPointer(scratch), count: used) }
        }
        session.clearCorked()
        guard written else { return tlsRecordFailed(slot) }
        queueCiphertext(slot, session, scheduling: scheduling)
    }

    /// Before a graceful close: what is corked, then a close_notify alert.
    func tlsWillClose(_ slot: Int) {
        guard let session = connections[slot].tls, session.isEstablished else { return }
        tlsUncork(slot, session, scheduling: true)
        // The uncork may have failed the session (closing the connection without a notify).
        guard session.isEstablished else { return }
        sb_tls_close_notify(session.connection)
        session.phase = .finished
        queueCiphertext(slot, session)
    }
}
