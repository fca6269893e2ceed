/// A TLS listener: its port, its certificates and the limits of its handshakes.
///
/// TLS 1.2 and 1.3 only, forward-secret AEAD ciphers for 1.2 (Mozilla "intermediate"), no
/// renegotiation, no compression, ALPN `http/1.1`, resumption by stateless tickets whose key
/// rotates every `ticketKeyRotationSeconds` (the previous key is still accepted once).
public struct TLSConfiguration: Sendable, Equatable {
    /// A certificate chain (leaf first) and its private key, both PEM files.
    public struct Certificate: Sendable, Equatable {
        public var chainPath: String
        public var privateKeyPath: String
        public init(chainPath: String, privateKeyPath: String) {
            self.chainPath = chainPath
            self.privateKeyPath = privateKeyPath
        }
    }

    /// TCP port of the TLS listener; 0 picks an ephemeral port (see `ShardGroup.tlsPort`).
    public var port: Int
    /// The default certificate (a client without SNI, or whose name matches no extra one).
    public var certificate: Certificate
    /// Extra certificates chosen when the client's SNI name matches their leaf (in order).
    public var sniCertificates: [Certificate] = []
    /// A connection that has not finished its handshake this long after it was accepted is
    /// closed (`switchboard_tls_handshake_timeouts_total`).
    public var handshakeTimeoutMilliseconds: Int = 10_000
    /// Handshakes one shard runs at once; beyond it new TLS sockets are closed at once
    /// (`switchboard_tls_handshakes_rejected_total`), so a handshake flood cannot starve the
    /// established connections of CPU.
    public var maxHandshakesInFlightPerShard: Int = 256
    /// How long a session-ticket key encrypts new tickets before a fresh one replaces it.
    public var ticketKeyRotationSeconds: Int = 3_600
    /// Who makes a TLS 1.3 session's records once its handshake is over.
    public var recordLayer: RecordLayer = .switchboard

    /// Who seals and opens TLS 1.3 application-data records (OpenSSL always runs the handshake).
    public enum RecordLayer: String, Sendable, Equatable, CaseIterable {
        /// Switchboard's own (RFC 8446 section 5): the AEAD through OpenSSL's EVP, keys from the
        /// negotiated traffic secrets, KeyUpdate answered. About a third of OpenSSL's user CPU
        /// per record. TLS 1.2 sessions and the CCM suites still use OpenSSL's.
        case switchboard
        /// OpenSSL's record layer for every session (the reference to compare with).
        case openssl
    }

    public init(port: Int, certificate: Certificate, sniCertificates: [Certificate] = []) {
        self.port = port
        self.certificate = certificate
        self.sniCertificates = sniCertificates
    }

    /// No certificate yet (`isEnabled` false): what a configuration file starts from.
    public init() {
        self.init(port: 3443, certificate: Certificate(chainPath: "", privateKeyPath: ""))
    }

    /// Whether a certificate is configured (a configuration file turns TLS on by naming one).
    public var isEnabled: Bool { !certificate.chainPath.isEmpty }

    /// Checks the numbers (the files are checked when the context is built).
    public func validate() -> String? {
        if port < 0 || port > 65_535 { return "tls port must be 0...65535" }
        if handshakeTimeoutMilliseconds < 1 { return "tls handshakeTimeoutMilliseconds must be positive" }
        if handshakeTimeoutMilliseconds > TimerList.maxDurationMilliseconds { return "tls handshakeTimeoutMilliseconds must be at most \(TimerList.maxDurationMilliseconds)" }
        if maxHandshakesInFlightPerShard < 1 { return "tls maxHandshakesInFlightPerShard must be >= 1" }
        if ticketKeyRotationSeconds < 1 { return "tls ticketKeyRotationSeconds must be >= 1" }
        if certificate.chainPath.isEmpty || certificate.privateKeyPath.isEmpty { return "tls needs both a certificate chain and a private key file" }
        return nil
    }
}

/// Why a TLS context could not be built (start-up fails; a reload keeps the old one).
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
