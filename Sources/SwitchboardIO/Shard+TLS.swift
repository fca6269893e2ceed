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
    /// The TLS session of each slot, unretained (nil: a plain connection or a free slot), for
    /// the per-message paths (`Shard.tlsSessions`): the connection's rare state owns the
    /// session (`Connection.tls`), this table only mirrors it (`tlsAttach` sets, `tlsDetach`
    /// clears, both with the owner). A session is released only in `Shard.finalize`, at the end
    /// of a turn, never during a delivery or a send, so no use of an entry outlives its session.
    /// Why: a lookup through the rare state was two retains and two releases (the rare state,
    /// then its session), atomic operations all, and a fan-out looked up every subscriber's
    /// session two or three times. Allocated like `Shard.connections`: only the pages used
    /// become resident.
    let sessions: UnsafeMutablePointer<Unmanaged<TLSSession>?>
    /// Each slot's `sb_tls_conn` (nil: a plain connection or a free slot), for the event
    /// loops' look-ahead (`Shard.prefetchAhead`): its address follows from the slot number, so
    /// asking for a connection's TLS state takes one load, where the session table would take
    /// two (the entry, then the session object's field). Set and cleared with `sessions`.
    let records: UnsafeMutablePointer<OpaquePointer?>
    /// The handshake deadlines (their own list: every entry has the handshake timeout).
    @exclusivity(unchecked) var handshakeTimers: TimerList

    init(store: TLSContextStore, maxConnections: Int) {
        self.store = store
        scratch = .allocate(byteCount: scratchBytes, alignment: 64)
        // calloc: zeroed pages, mapped fresh at this size, resident only where a slot was used.
        // A zero word is `nil` (the null pointer is Unmanaged's first extra inhabitant), so the
        // table starts all-nil without being written.
        precondition(MemoryLayout<Unmanaged<TLSSession>?>.stride == 8 &&
                     withUnsafeBytes(of: Unmanaged<TLSSession>?.none) { $0.allSatisfy { $0 == 0 } },
                     "nil is not a zero word")
        sessions = calloc(max(maxConnections, 1), 8)!.bindMemory(to: Unmanaged<TLSSession>?.self, capacity: maxConnections)
        precondition(MemoryLayout<OpaquePointer?>.stride == 8, "an entry is not one word (calloc zeroes: nil)")
        records = calloc(max(maxConnections, 1), 8)!.bindMemory(to: OpaquePointer?.self, capacity: maxConnections)
        handshakeTimers = TimerList(capacity: maxConnections, durationMilliseconds: store.configuration.handshakeTimeoutMilliseconds)
    }

    deinit {
        scratch.deallocate()
        free(sessions)  // unretained entries: nothing to release
        free(records)
        handshakeTimers.deallocate()
    }
}

/// The TLS layer between the shard's socket and its protocol handler. The plain path does not
/// come here: each hook in `Shard` is one test (receiving: the connection's rare state being
/// nil; sending and flushing: `tlsSessions?[slot]`, the unretained table, being nil).
///
/// Received ciphertext is fed to the connection's `TLSSession`; the handshake advances; once
/// established, decrypted plaintext goes to `handler.connectionReceived`. `Shard.send` corks a
/// copy of the plaintext; the flush (`tlsUncork`) encrypts it and queues the ciphertext, so the send queue,
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
        assert(state.sessions[slot] == nil, "a session left on a free slot")
        setTLSSession(slot, session)
        state.sessions[slot] = Unmanaged.passUnretained(session)
        state.records[slot] = session.connection
        session.listedInShardTable = true
        session.holdsHandshakePlace = true
        state.handshakesInFlight += 1
        tlsMetrics.handshakesInFlight.set(state.handshakesInFlight)
        state.handshakeTimers.prepare(slot: slot)
        state.handshakeTimers.arm(slot, now: nowMilliseconds)
        return true
    }

    /// The slot is being freed: a handshake that never finished gives its place back.
    /// Called from `finalize` only (see `TLSShardState.sessions`).
    func tlsDetach(_ slot: Int) {
        guard let session = sides[slot].tls, let state = tlsState else { return }
        assert(state.sessions[slot]?.toOpaque() == Unmanaged.passUnretained(session).toOpaque(), "the session table disagrees with the owner")
        if session.holdsHandshakePlace { endHandshake(state, slot, session) }
        let keyUpdates = sb_tls_key_updates(session.connection)
        if keyUpdates > 0 { tlsMetrics.keyUpdates.increment(by: Int(keyUpdates)) }
        state.sessions[slot] = nil
        state.records[slot] = nil
        session.listedInShardTable = false
        setTLSSession(slot, nil)
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

    /// Received ciphertext of a TLS connection (state `.open`). `handler` is the shard's,
    /// passed down as `deliver` does (read from the stored property per record, the existential
    /// was retained and released each time).
    func tlsDeliver(_ slot: Int, _ session: TLSSession, _ bytes: UnsafeRawBufferPointer, to handler: ShardEventHandler) {
        // What the handler sent before this input is encrypted before reading it can write
        // anything (an alert, a key update) or end the session (close_notify), as without the
        // cork.
        if session.hasCorked { tlsUncork(slot, session, scheduling: true) }
        if case .handshaking(let sawInput) = session.phase, !sawInput {
            session.phase = .handshaking(sawInput: true)
            // Every TLS connection begins with a handshake record (content type 22).
            guard bytes.first == 0x16 else {
                rejectNotTLS(slot, bytes)
                return
            }
        }
        guard case .handshaking = session.phase else {
            if session.isEstablished { feedAndRead(slot, session, bytes, to: handler) }
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
            readPlaintext(slot, session, to: handler)
        case 0:
            queueCiphertext(slot, session)
        default:
            handshakeFailed(slot, session)
        }
    }

    private func feedAndRead(_ slot: Int, _ session: TLSSession, _ bytes: UnsafeRawBufferPointer, to handler: ShardEventHandler) {
        guard sb_tls_feed(session.connection, bytes.baseAddress, bytes.count) == Int32(bytes.count) else {
            tlsRecordFailed(slot)
            return
        }
        readPlaintext(slot, session, to: handler)
    }

    /// Decrypts what the read BIO holds and hands it to the protocol layer, record by record.
    private func readPlaintext(_ slot: Int, _ session: TLSSession, to handler: ShardEventHandler) {
        assert(handler === self.handler, "a handler other than the shard's")
        // The shard's field, not `tlsState.scratch`: reaching it through the state object was a
        // retain and a release per received batch.
        guard let scratch = tlsScratch else { return }
        let id = socketID(slot)
        while connections[slot].state == .open {
            let n = sb_tls_read(session.connection, scratch.baseAddress, scratch.count)
            if n > 0 {
                handler.connectionReceived(id, UnsafeRawBufferPointer(start: scratch.baseAddress, count: Int(n)))
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
        if let session = tlsSession(slot) { abandonHandshake(slot, session) }
        // An HTTP method starts with an upper-case letter: answer in plaintext, as nginx does.
        if let first = bytes.first, first >= UInt8(ascii: "A") && first <= UInt8(ascii: "Z") {
            tlsMetrics.plaintextRejected.increment()
            connections[slot].queue.append(Self.plaintextOnTLSPortResponse, budget: memory)
            scheduleFlush(slot)
            close(socketID(slot), mode: .afterFlush)
        } else {
            tlsMetrics.handshakeFailures.increment()
            beginClose(slot)
        }
    }


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
        if let s = tlsSession(slot) {
            s.phase = .finished
            queueCiphertext(slot, s)
        }
        close(socketID(slot), mode: .afterFlushNoLinger)
    }

    /// Moves the ciphertext OpenSSL produced into the send queue (and schedules its flush
    /// unless `scheduling` is false: the flush calling it submits the queue itself).
    ///
    /// Ciphertext that fits a send block is copied out of the record layer straight into one
    /// (`SendQueue.appendInBlock`): it is copied anyway, and a block costs no malloc and no
    /// free, where a buffer of its own cost both per flush (one malloc per echo before; user
    /// time per echo 0.570 -> 0.523 µs at 1,000 wss connections on io_uring, RESULTS.md
    /// 2026-12-05 13:24). Larger ciphertext, no block left in the pool, or coalescing off
    /// (`sendCoalesceMaxFrameBytes` or `maxSendBlocksPerShard` 0): a buffer of its own.
    func queueCiphertext(_ slot: Int, _ session: TLSSession, scheduling: Bool = true) {
        assertOnShardThread()
        let st = connections[slot].state
        guard st == .open || st == .draining else { return }
        let conn = session.connection
        let pending = sb_tls_pending_out(conn)
        guard pending > 0 else { return }
        if coalescesCiphertext && pending <= sendBlocks.blockBytes {
            let queued = connections[slot].queue.appendInBlock(count: pending, inFlightBytes: inFlightBytes(slot), pool: sendBlocks, budget: memory) { to in
                let taken = sb_tls_take_out(conn, to, pending)
                precondition(taken == Int32(pending), "the record layer handed over less than it holds")
            }
            if queued {
                if scheduling { scheduleFlush(slot) }
                return
            }
        }
        if let out = session.takeCiphertext() {
            connections[slot].queue.append(out, budget: memory)
            if scheduling { scheduleFlush(slot) }
        }
    }

    /// `Shard.send` for a TLS connection: corks a copy of the plaintext until the flush
    /// (before the handshake ends: keeps one until it does). The caller checked the limits,
    /// counting what is corked (`admitSend`), and keeps its frame: nothing here holds a reference.
    func tlsEnqueue(_ slot: Int, _ session: TLSSession, _ bytes: UnsafeRawBufferPointer) {
        assertOnShardThread()
        switch session.phase {
        case .handshaking:
            session.pendingPlaintext.append(OutboundBytes(bytes))
        case .established:
            if bytes.count > TLSSession.corkCopyMaxBytes {
                // Large: encrypted from where it is, after what was corked before it, rather
                // than copied (and a large cork buffer kept for the turn); the record layer
                // keeps the records as full as if it were corked (`sb_tls_uncork`).
                guard session.uncork(then: bytes) else { return tlsRecordFailed(slot) }
                queueCiphertext(slot, session)
                return
            }
            guard session.cork(bytes) else { return tlsRecordFailed(slot) }
            scheduleFlush(slot)
        case .finished:
            break
        }
    }

    /// Encrypts what is corked (`TLSSession.uncork`) and queues the ciphertext. A session that
    /// ended meanwhile drops it (as a send after the end).
    func tlsUncork(_ slot: Int, _ session: TLSSession, scheduling: Bool) {
        assertOnShardThread()
        guard session.hasCorked else { return }
        guard session.isEstablished else {
            session.clearCorked()
            return
        }
        guard session.uncork() else { return tlsRecordFailed(slot) }
        queueCiphertext(slot, session, scheduling: scheduling)
    }

    /// The session of `slot` (paths that are not per message: per-message ones use
    /// `tlsSessions` unretained).
    func tlsSession(_ slot: Int) -> TLSSession? { sides[slot].tls }

    /// Before a graceful close: what is corked, then a close_notify alert.
    func tlsWillClose(_ slot: Int) {
        guard let session = tlsSession(slot), session.isEstablished else { return }
        tlsUncork(slot, session, scheduling: true)
        // The uncork may have failed the session (closing the connection without a notify).
        guard session.isEstablished else { return }
        sb_tls_close_notify(session.connection)
        session.phase = .finished
        queueCiphertext(slot, session)
    }
}
