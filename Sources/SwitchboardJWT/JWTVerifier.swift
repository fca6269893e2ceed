import SwitchboardJSON

/// Verifies JWS compact tokens (RFC 7515/7519) for the broadcaster protocol.
///
/// Order of checks (each failure is final): size → three segments (header and payload
/// non-empty) → strict base64url → header JSON object → `alg` among the configured keys'
/// algorithms (so `none`, `HS384` and an `RS256` token against an HMAC-only configuration are
/// refused before any cryptography) → non-empty signature
/// (constant time for HMAC) → payload JSON object → claim types → `exp` (required) → `nbf`,
/// `iat` → `aud`. The signature is checked before the claims are trusted, so an attacker learns
/// nothing about claim validation from an unsigned token.
///
/// Thread rules: immutable; `verify` may run on any thread concurrently.
public struct JWTVerifier: Sendable {
    public struct Configuration: Sendable {
        /// The value `aud` must equal (or contain, when an array).
        public var audience: String = "broadcaster"
        /// Clock skew tolerated on `exp`, `nbf` and `iat`.
        public var leewaySeconds: Int = 30
        /// Tokens longer than this are refused before decoding.
        public var maxTokenBytes: Int = 8192
        /// Nesting limit for header and payload JSON.
        public var maxJSONDepth: Int = 8
        /// Refuse a token whose `sub` is absent or empty (`.missingClaim("sub")`).
        public var requireSubject: Bool = true
        /// Refuse a token whose `authorizedChannels` is absent or empty
        /// (`.missingClaim("authorizedChannels")`), as the reference broadcaster does.
        public var requireAuthorizedChannels: Bool = true

        /// The largest leeway accepted (one day): more is a configuration mistake.
        public static let maxLeewaySeconds = 86_400

        public init(audience: String = "broadcaster", leewaySeconds: Int = 30, maxTokenBytes: Int = 8192, maxJSONDepth: Int = 8,
                    requireSubject: Bool = true, requireAuthorizedChannels: Bool = true) {
            precondition(leewaySeconds >= 0 && leewaySeconds <= Configuration.maxLeewaySeconds, "leeway out of range")
            precondition(maxTokenBytes > 0 && maxJSONDepth >= 2)
            self.audience = audience
            self.leewaySeconds = leewaySeconds
            self.maxTokenBytes = maxTokenBytes
            self.maxJSONDepth = maxJSONDepth
            self.requireSubject = requireSubject
            self.requireAuthorizedChannels = requireAuthorizedChannels
        }
    }

    public let keys: [JWTKey]
    public let configuration: Configuration

    public init(keys: [JWTKey], configuration: Configuration = Configuration()) {
        precondition(!keys.isEmpty, "a verifier needs at least one key")
        self.keys = keys
        self.configuration = configuration
    }

    /// Verifies `token` at time `nowSeconds` (Unix seconds) and returns its claims.
    public func verify(_ token: String, nowSeconds: Int) throws(JWTError) -> JWTClaims {
        var text = token
        // withUTF8 rethrows untyped errors; a Result keeps the type.
        let result = text.withUTF8 { bytes in Result { () throws(JWTError) in try verify(bytes, nowSeconds: nowSeconds) } }
        return try result.get()
    }

    public func verify(_ token: UnsafeBufferPointer<UInt8>, nowSeconds: Int) throws(JWTError) -> JWTClaims {
        guard token.count <= configuration.maxTokenBytes else { throw .tooLarge }
        // Three non-empty segments.
        var dots: [Int] = []
        for (i, c) in token.enumerated() where c == UInt8(ascii: ".") {
            dots.append(i)
            if dots.count > 2 { throw .malformed }
        }
        guard dots.count == 2 else { throw .malformed }
        let headerRange = 0..<dots[0]
        let payloadRange = (dots[0] + 1)..<dots[1]
        let signatureRange = (dots[1] + 1)..<token.count
        // An empty signature is left to the algorithm check: `alg: none` tokens have one, and
        // they are refused as such.
        guard !headerRange.isEmpty, !payloadRange.isEmpty else { throw .malformed }
        guard let header = Base64URL.decode(token[headerRange]),
              let payload = Base64URL.decode(token[payloadRange]),
              let signature = Base64URL.decode(token[signatureRange]) else { throw .badBase64URL }

        // Header: which algorithm (and key id).
        let (algorithm, keyID) = try header.withUnsafeBufferPointer { (h) throws(JWTError) -> (JWTAlgorithm, String?) in
            let members = try parseObject(h)
            if members["crit"] != nil { throw .algorithmNotAllowed("crit") }
            guard let algMember = members["alg"], algMember.kind == .string,
                  let name = try? JSONReader.decodeString(h, algMember.range) else { throw .algorithmNotAllowed("missing") }
            guard let algorithm = JWTAlgorithm(rawValue: name), keys.contains(where: { $0.algorithm == algorithm }) else {
                throw .algorithmNotAllowed(name)
            }
            var keyID: String? = nil
            if let kid = members["kid"] {
                guard kid.kind == .string, let k = try? JSONReader.decodeString(h, kid.range) else { throw .malformed }
                keyID = k
            }
            return (algorithm, keyID)
        }

        // Signature over the ASCII text `header.payload`, exactly as received.
        let signingInput = UnsafeBufferPointer(rebasing: token[0..<dots[1]])
        guard !signature.isEmpty else { throw .badSignature }
        let candidates = keys.filter { $0.algorithm == algorithm && (keyID == nil || $0.keyID == nil || $0.keyID == keyID) }
        guard candidates.contains(where: { $0.verifies(signingInput, signature: signature) }) else { throw .badSignature }

        return try payload.withUnsafeBufferPointer { (p) throws(JWTError) -> JWTClaims in
            try claims(p, nowSeconds: nowSeconds)
        }
    }

    private func parseObject(_ bytes: UnsafeBufferPointer<UInt8>) throws(JWTError) -> [String: JSONMember] {
        do {
            return try JSONReader.parseObject(bytes, maxDepth: configuration.maxJSONDepth)
        } catch {
            throw error == .notAnObject ? .notAnObject : .badJSON
        }
    }

    private func claims(_ p: UnsafeBufferPointer<UInt8>, nowSeconds: Int) throws(JWTError) -> JWTClaims {
        let members = try parseObject(p)

        func string(_ name: String) throws(JWTError) -> String? {
            guard let m = members[name] else { return nil }
            guard m.kind == .string, let s = try? JSONReader.decodeString(p, m.range) else { throw .invalidClaim(name) }
            return s
        }
        func numericDate(_ name: String) throws(JWTError) -> Int? {
            guard let m = members[name] else { return nil }
            guard m.kind == .number, let v = JSONReader.truncatedInteger(p, m.range) else { throw .invalidClaim(name) }
            return v
        }
        func stringArray(_ name: String) throws(JWTError) -> [String]? {
            guard let m = members[name] else { return nil }
            guard m.kind == .array, let elements = try? JSONReader.parseArray(p, in: m.range, maxDepth: 1) else { throw .invalidClaim(name) }
            var out: [String] = []
            out.reserveCapacity(elements.count)
            for e in elements {
                guard e.kind == .string, let s = try? JSONReader.decodeString(p, e.range) else { throw .invalidClaim(name) }
                out.append(s)
            }
            return out
        }

        let subject = try string("sub")
        guard let expiresAt = try numericDate("exp") else { throw .missingClaim("exp") }
        let issuedAt = try numericDate("iat")
        let notBefore = try numericDate("nbf")
        let channels = try stringArray("authorizedChannels")
        let scope = try stringArray("scope")
        // `aud`: a string or an array of strings (RFC 7519 §4.1.3).
        let audiences: [String]
        if let m = members["aud"], m.kind == .array {
            audiences = try stringArray("aud") ?? []
        } else if let a = try string("aud") {
            audiences = [a]
        } else {
            audiences = []
        }

        // No overflow: NumericDates are within ±2^53 (truncatedInteger), the leeway within a day.
        let leeway = configuration.leewaySeconds
        guard nowSeconds <= expiresAt + leeway else { throw .expired }
        if let nbf = notBefore, nowSeconds + leeway < nbf { throw .notYetValid }
        if let iat = issuedAt, nowSeconds + leeway < iat { throw .issuedInFuture }
        guard audiences.contains(configuration.audience) else { throw .wrongAudience }
        if configuration.requireSubject && (subject ?? "").isEmpty { throw .missingClaim("sub") }
        if configuration.requireAuthorizedChannels && (channels ?? []).isEmpty { throw .missingClaim("authorizedChannels") }

        return JWTClaims(subject: subject ?? "", expiresAtSeconds: expiresAt, issuedAtSeconds: issuedAt,
                         notBeforeSeconds: notBefore, authorizedChannels: channels ?? [], scope: scope ?? [])
    }
}
