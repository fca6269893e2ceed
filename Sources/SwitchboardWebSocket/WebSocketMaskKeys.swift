import COpenSSL

/// Masking keys for the client role (RFC 6455 §10.3: "derived from a strong source of entropy").
///
/// Keys come from OpenSSL's CSPRNG in batches of ``batchSize`` (one call per 64 frames, so a
/// load generator pays no per-frame system call), and are handed out in order. Not `Sendable`:
/// it lives inside one connection (or one load-generator thread).
package struct WebSocketMaskKeys {
    /// Keys fetched per CSPRNG call.
    static let batchSize = 64
    private var keys: [UInt32]
    private var next: Int

    /// Creates an empty source; the first ``next()`` fills it.
    package init() {
        keys = [UInt32](repeating: 0, count: Self.batchSize)
        next = Self.batchSize
    }

    /// The next key, as ``Masking`` takes it (low byte = first mask byte on the wire).
    package mutating func nextKey() -> UInt32 {
        if next == Self.batchSize { refill() }
        let key = keys[next]
        next &+= 1
        return key
    }

    private mutating func refill() {
        let status = keys.withUnsafeMutableBytes { sb_random_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count) }
        // Without entropy a client must not send predictable masks: there is no safe fallback.
        precondition(status == 0, "sb_random_bytes failed: no entropy for WebSocket masking keys")
        next = 0
    }
}
