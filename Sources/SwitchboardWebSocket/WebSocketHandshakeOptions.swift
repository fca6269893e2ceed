/// Server policy applied by ``WebSocketHandshake/negotiate(_:options:subprotocol:)``.
package struct WebSocketHandshakeOptions: Sendable {
    /// Accept a permessage-deflate offer when the client makes an acceptable one.
    package var enablePerMessageDeflate: Bool = true
    /// If non-nil, an `Origin` header must be present and equal (case-insensitive) one of these, else 403.
    package var allowedOrigins: [String]? = nil

    /// Creates options.
    package init(enablePerMessageDeflate: Bool = true, allowedOrigins: [String]? = nil) {
        self.enablePerMessageDeflate = enablePerMessageDeflate
        self.allowedOrigins = allowedOrigins
    }
}
