/// The verified claims of a token that the broadcaster protocol uses. Times are Unix seconds.
public struct JWTClaims: Equatable, Sendable {
    /// `sub`; may be empty (the protocol layer decides whether that is acceptable).
    public var subject: String
    /// `exp` (required).
    public var expiresAtSeconds: Int
    /// `iat`, when present.
    public var issuedAtSeconds: Int?
    /// `nbf`, when present.
    public var notBeforeSeconds: Int?
    /// `authorizedChannels` (empty when absent).
    public var authorizedChannels: [String]
    /// `scope` (empty when absent): "subscribe", "publish"; other values are kept, unused.
    public var scope: [String]

    public init(subject: String, expiresAtSeconds: Int, issuedAtSeconds: Int? = nil, notBeforeSeconds: Int? = nil,
                authorizedChannels: [String] = [], scope: [String] = []) {
        self.subject = subject
        self.expiresAtSeconds = expiresAtSeconds
        self.issuedAtSeconds = issuedAtSeconds
        self.notBeforeSeconds = notBeforeSeconds
        self.authorizedChannels = authorizedChannels
        self.scope = scope
    }
}
