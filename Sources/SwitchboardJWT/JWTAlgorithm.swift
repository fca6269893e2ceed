/// The JWS algorithms a `JWTVerifier` can be configured with. `none` and every other `alg`
/// value are refused outright: a token's header never chooses how it is verified beyond
/// selecting among the keys the operator configured.
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    /// HMAC with SHA-256 and a shared secret (the reference broadcaster's only algorithm).
    case hs256 = "HS256"
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA public key of at least 2048 bits.
    case rs256 = "RS256"
    /// ECDSA on P-256 with SHA-256.
    case es256 = "ES256"
}
