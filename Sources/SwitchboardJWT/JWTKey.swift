import COpenSSL

/// One verification key: an HMAC secret or a public key read from PEM. Immutable after init;
/// OpenSSL allows concurrent verifications with one `EVP_PKEY` that nobody modifies, so a key
/// is shared by all shards.
public final class JWTKey: @unchecked Sendable {
    public let algorithm: JWTAlgorithm
    /// Optional key id: a token whose header names a `kid` is only checked against keys with
    /// that id (or without an id).
    public let keyID: String?

    private enum Material {
        case secret([UInt8])
        /// An owned `EVP_PKEY *`, freed in deinit.
        case publicKey(OpaquePointer)
    }
    private let material: Material

    public enum KeyError: Error, Equatable, Sendable {
        /// An HS256 secret shorter than 32 bytes (RFC 7518 §3.2: at least the hash size).
        case secretTooShort
        /// The text is not one SubjectPublicKeyInfo PEM block.
        case notAPublicKeyPEM
        /// The PEM holds a key of another type than the algorithm needs, or an RSA key under
        /// 2048 bits, or an EC key not on P-256.
        case wrongKeyType
    }

    /// Minimum HMAC secret length. The reference accepts any; refusing short ones is deliberate
    /// (README: differences). `allowShortSecret` exists for compatibility mode.
    public static let minimumSecretBytes = 32

    /// An HS256 key.
    public init(hmacSecret: [UInt8], keyID: String? = nil, allowShortSecret: Bool = false) throws(KeyError) {
        guard allowShortSecret || hmacSecret.count >= JWTKey.minimumSecretBytes, !hmacSecret.isEmpty else { throw .secretTooShort }
        self.algorithm = .hs256
        self.keyID = keyID
        self.material = .secret(hmacSecret)
    }

    /// An RS256 or ES256 key from a PEM public key.
    public init(algorithm: JWTAlgorithm, publicKeyPEM: String, keyID: String? = nil) throws(KeyError) {
        precondition(algorithm != .hs256, "HS256 keys are secrets: use init(hmacSecret:)")
        var kind: Int32 = 0
        var bits: Int32 = 0
        var pem = publicKeyPEM
        let key: UnsafeMutableRawPointer? = pem.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { sb_public_key_from_pem($0.baseAddress, $0.count, &kind, &bits) }
        }
        guard let key else { throw .notAPublicKeyPEM }
        let expected = algorithm == .rs256 ? Int32(SB_KEY_RSA) : Int32(SB_KEY_EC_P256)
        guard kind == expected, algorithm != .rs256 || bits >= 2048 else {
            sb_public_key_free(key)
            throw .wrongKeyType
        }
        self.algorithm = algorithm
        self.keyID = keyID
        self.material = .publicKey(OpaquePointer(key))
    }

    deinit {
        if case .publicKey(let key) = material { sb_public_key_free(UnsafeMutableRawPointer(key)) }
    }

    /// Whether `signature` is this key's signature of `signingInput` (`header.payload`).
    func verifies(_ signingInput: UnsafeBufferPointer<UInt8>, signature: [UInt8]) -> Bool {
        switch (algorithm, material) {
        case (.hs256, .secret(let secret)):
            guard signature.count == 32 else { return false }
            var mac = [UInt8](repeating: 0, count: 32)
            let rc = secret.withUnsafeBufferPointer { k in
                mac.withUnsafeMutableBufferPointer { m in
                    sb_hmac_sha256(k.baseAddress, k.count, signingInput.baseAddress, signingInput.count, m.baseAddress)
                }
            }
            guard rc == 0 else { return false }
            // Constant time: the comparison must not reveal how many leading bytes matched.
            return signature.withUnsafeBufferPointer { s in mac.withUnsafeBufferPointer { m in
                sb_memcmp_consttime(s.baseAddress, m.baseAddress, 32) == 0
            } }
        case (.rs256, .publicKey(let key)):
            return signature.withUnsafeBufferPointer { s in
                sb_verify_rs256(UnsafeMutableRawPointer(key), signingInput.baseAddress, signingInput.count, s.baseAddress, s.count) == 1
            }
        case (.es256, .publicKey(let key)):
            guard signature.count == 64 else { return false }
            return signature.withUnsafeBufferPointer { s in
                sb_verify_es256(UnsafeMutableRawPointer(key), signingInput.baseAddress, signingInput.count, s.baseAddress) == 1
            }
        default:
            // An algorithm paired with the other kind of material cannot be built (the inits
            // enforce it); refusing here too keeps "RS256 verified as HMAC" impossible.
            assertionFailure("key material does not match its algorithm")
            return false
        }
    }
}
