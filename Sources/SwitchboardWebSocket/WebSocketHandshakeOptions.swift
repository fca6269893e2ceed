/// Server policy applied by ``WebSocketHandshake/negotiate(_:options:subprotocol:)``.
public struct WebSocketHandshakeOptions: Sendable {
    /// Accept a permessage-deflate offer when the client makes an acceptable one.
    public var enablePerMessageDeflate: Bool = true
    /// If non-nil, an `Origin` header must be present and equal (case-insensitive) one of these, else 403.
    public var allowedOrigins: [String]? = nil

    /// Creates options.
    public init(enablePerMessageDeflate: Bool = true, allowedOrigins: [String]? = nil) {
        self.enablePerMessageDeflate = enablePerMessageDeflate
        self.allowedOrigins = allowedOrigins
    }
}
