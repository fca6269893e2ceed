import COpenSSL

/// The TLS state of one connection, owned by its shard (never shared, never locked): OpenSSL's
/// SSL object between two memory BIOs for the handshake, then (TLS 1.3, `tls_record_layer =
/// switchboard`) Switchboard's own record layer with its own buffers. Ciphertext the shard
/// received goes in with `sb_tls_feed`; ciphertext to send comes out with `takeCiphertext` and
/// joins the connection's send queue.
///
/// Shard-confined, so its stored properties skip Swift's dynamic exclusivity checks
/// (`@exclusivity(unchecked)`; with `ConnectionRareState`'s and `TLSShardState`'s they cost
/// ~500 instructions per TLS echo, more than the AEAD).
final class TLSSession {
    enum Phase {
        /// Waiting for (more of) the ClientHello and the client's Finished. `sawInput` tells
        /// whether the first bytes were already checked for being TLS at all.
        case handshaking(sawInput: Bool)
        case established
        /// The handshake failed or the peer sent close_notify: nothing more is decrypted.
        case finished
    }

    let connection: OpaquePointer
    @exclusivity(unchecked) var phase: Phase = .handshaking(sawInput: false)
    /// Plaintext the protocol layer sent before the handshake finished, written once it has.
    @exclusivity(unchecked) var pendingPlaintext: [OutboundBytes] = []
    /// Counted in the shard's handshakes in flight (from adoption until the handshake ends,
    /// fails, or the slot is freed).
    @exclusivity(unchecked) var holdsHandshakePlace = false
    /// The send-queue cost (`SendQueue.cost`) of the plaintext corked since the last flush,
    /// counted against the send limits as if it were queued already; 0 when nothing is corked.
    /// The plaintext itself is copied into the session's cork (`sb_tls_cork`), encrypted
    /// together when the shard flushes (`Shard.tlsUncork`): one record per 16 KiB instead of one
    /// per message (uWebSockets' cork), so a fan-out's subscriber gets a turn's messages in one
    /// record, and the sender keeps no reference to the frames (a retain and a release per
    /// delivery, each an atomic operation, were most of what TLS added to a fan-out).
    @exclusivity(unchecked) private(set) var corkedCost = 0
    /// Whether the shard's unretained session table (`TLSShardState.sessions`) lists this
    /// session: set by `Shard.tlsAttach`, cleared by `Shard.tlsDetach`. The table holds no
    /// reference, so a session freed while listed would leave it pointing at freed memory; the
    /// check is at `deinit` (debug builds), where such a release would show first.
    @exclusivity(unchecked) var listedInShardTable = false

    init?(context: TLSContext, recordLayer: TLSConfiguration.RecordLayer) {
        guard let c = sb_tls_conn_new(context.pointer) else { return nil }
        connection = c
        if recordLayer == .switchboard { sb_tls_set_own_records(c, 1) }
    }

    deinit {
        assert(!listedInShardTable, "a TLS session freed while the shard's unretained table still lists it")
        sb_tls_conn_free(connection)
    }

    var isHandshaking: Bool {
        if case .handshaking = phase { return true }
        return false
    }

    var isEstablished: Bool {
        if case .established = phase { return true }
        return false
    }

    /// The ciphertext OpenSSL produced since the last call, as one buffer for the send queue.
    func takeCiphertext() -> OutboundBytes? {
        let pending = sb_tls_pending_out(connection)
        guard pending > 0 else { return nil }
        let out = OutboundBytes(capacity: pending) { buffer in
            Int(sb_tls_take_out(connection, buffer.baseAddress!, buffer.count))
        }
        assert(out.count == pending, "a memory BIO hands over all it holds")
        return out
    }

    /// Encrypts `bytes` into the outgoing BIO. false when OpenSSL refused (the connection is broken).
    func write(_ bytes: OutboundBytes) -> Bool {
        write(bytes.base, count: bytes.count)
    }

    /// Encrypts `count` bytes at `base` (one record per 16 KiB). false when OpenSSL refused.
    func write(_ base: UnsafeRawPointer, count: Int) -> Bool {
        guard count > 0 else { return true }
        return sb_tls_write(connection, base, count) == Int32(count)
    }

    /// Messages up to this size are corked as copies; a larger one is encrypted from where it
    /// is (after what was corked before it): its records cost the same whichever way, and the
    /// copy would be a pass over it and a large cork buffer for the turn.
    static let corkCopyMaxBytes = 4_096

    /// Whether plaintext waits in the cork.
    var hasCorked: Bool { corkedCost > 0 }

    /// Copies `bytes` into the cork for the flush (established sessions only). false when
    /// memory ran out (the caller fails the connection).
    func cork(_ bytes: UnsafeRawBufferPointer) -> Bool {
        assert(isEstablished, "corked before the handshake or after the end")
        guard bytes.count > 0 else { return true }
        guard sb_tls_cork(connection, bytes.baseAddress, bytes.count) == 0 else { return false }
        corkedCost += SendQueue.cost(payloadBytes: bytes.count)
        assert(sb_tls_corked_bytes(connection) > 0)
        return true
    }

    /// Encrypts what is corked, in send order, in as few records as fit (16 KiB each), into the
    /// outgoing buffer, then `then` (a message too large to copy) as if it had been corked too.
    /// false when the record layer refused (the connection is broken).
    func uncork(then: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> Bool {
        corkedCost = 0
        return sb_tls_uncork(connection, then.baseAddress, then.count) == 0
    }

    /// Forgets what is corked (dropped with the connection, or by `dropUnsentQueue`).
    func clearCorked() {
        guard hasCorked else { return }
        sb_tls_drop_corked(connection)
        corkedCost = 0
    }

    static func lastError() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        sb_tls_error(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// TLS counters of one shard (written by the shard, read by any thread).
package final class TLSMetrics: Sendable {
    package let handshakes = Counter("switchboard_tls_handshakes_total", help: "TLS handshakes completed")
    package let resumed = Counter("switchboard_tls_resumed_total", help: "TLS handshakes that resumed a session (ticket)")
    package let handshakeFailures = Counter("switchboard_tls_handshake_failures_total", help: "TLS handshakes that failed (garbage or truncated ClientHello, no shared cipher or version, ...)")
    package let handshakeTimeouts = Counter("switchboard_tls_handshake_timeouts_total", help: "TLS connections closed because the handshake did not finish in handshakeTimeoutMilliseconds")
    package let handshakesRejected = Counter("switchboard_tls_handshakes_rejected_total", help: "TLS sockets closed at once because the shard had maxHandshakesInFlightPerShard handshakes running")
    package let handshakesInFlight = Counter("switchboard_tls_handshakes_in_flight", help: "TLS handshakes running now")
    package let plaintextRejected = Counter("switchboard_tls_plaintext_rejected_total", help: "Plaintext HTTP sent to the TLS port (answered 400 and closed)")
    package let renegotiationsRefused = Counter("switchboard_tls_renegotiations_refused_total", help: "TLS renegotiation attempts (the connection is closed)")
    package let recordErrors = Counter("switchboard_tls_record_errors_total", help: "Established TLS connections closed because a record did not decrypt")
    package let ownRecordSessions = Counter("switchboard_tls_own_record_sessions_total", help: "TLS 1.3 sessions whose records Switchboard made after the handshake (tls_record_layer = switchboard)")
    package let keyUpdates = Counter("switchboard_tls_key_updates_total", help: "TLS 1.3 KeyUpdate messages received on Switchboard's record layer (counted when the connection ends)")

    package var all: [Counter] {
        [handshakes, resumed, handshakeFailures, handshakeTimeouts, handshakesRejected, handshakesInFlight,
         plaintextRejected, renegotiationsRefused, recordErrors, ownRecordSessions, keyUpdates]
    }
}
