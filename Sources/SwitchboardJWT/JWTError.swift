/// Why a token was refused. Every case is a refusal; none says more than the client needs.
public enum JWTError: Error, Equatable, Sendable {
    /// Longer than the configured `maxTokenBytes` (checked before any decoding).
    case tooLarge
    /// Not three non-empty dot-separated segments.
    case malformed
    /// A segment is not strict unpadded base64url.
    case badBase64URL
    /// The header or payload is not valid JSON (strict reader), or is nested too deeply.
    case badJSON
    /// The header or payload is valid JSON but not an object.
    case notAnObject
    /// The header's `alg` is missing, `none`, unknown, or not configured; or the header asks
    /// for extensions (`crit`) this verifier does not implement.
    case algorithmNotAllowed(String)
    /// No configured key of the token's algorithm (and `kid`, when given) verifies the signature.
    case badSignature
    /// `exp` is in the past (beyond the leeway).
    case expired
    /// `nbf` is in the future (beyond the leeway).
    case notYetValid
    /// `iat` is in the future (beyond the leeway).
    case issuedInFuture
    /// `aud` is missing or does not contain the configured audience.
    case wrongAudience
    /// A required claim is absent.
    case missingClaim(String)
    /// A claim has the wrong JSON type (for example `exp` as a string, `scope` not an array of
    /// strings).
    case invalidClaim(String)
}

extension JWTError: CustomStringConvertible {
    /// A short English reason, safe to send to the client.
    public var description: String {
        switch self {
        case .tooLarge: "token is too large"
        case .malformed: "token is malformed"
        case .badBase64URL: "token is not valid base64url"
        case .badJSON: "token is not valid JSON"
        case .notAnObject: "token header or claims are not a JSON object"
        case .algorithmNotAllowed(let alg): "signing method \(alg) is not allowed"
        case .badSignature: "signature is invalid"
        case .expired: "token is expired"
        case .notYetValid: "token is not valid yet"
        case .issuedInFuture: "token used before issued"
        case .wrongAudience: "token has invalid audience"
        case .missingClaim(let name): "token is missing required claim: \(name)"
        case .invalidClaim(let name): "token has invalid claim: \(name)"
        }
    }
}
