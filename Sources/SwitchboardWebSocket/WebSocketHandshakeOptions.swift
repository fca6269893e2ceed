/// Server policy applied by ``WebSocketHandshake/negotiate(_:options:subprotocol:)``.
package struct WebSocketHandshakeOptions: Sendable {
    /// Accept a permessage-deflate offer when the client makes an acceptable one.
    package var enablePerMessageDeflate: Bool = true
    /// Keep our compressor's LZ77 window from one message to the next (RFC 7692's default). When
    /// false every accepted offer is answered with `server_no_context_takeover`, which RFC 7692
    /// §7.1.1.1 lets a server add unasked: each message is compressed alone, so the compressor
    /// holds nothing between messages and its ~266 KiB can be given back after each one.
    package var serverContextTakeover: Bool = true
    /// If non-nil, an `Origin` header must be present and equal (case-insensitive) one of these, else 403.
    package var allowedOrigins: [String]? = nil

    /// Creates options.
    package init(enablePerMessageDeflate: Bool = true, serverContextTakeover: Bool = true, allowedOrigins: [String]? = nil) {
        self.enablePerMessageDeflate = enablePerMessageDeflate
        self.serverContextTakeover = serverContextTakeover
        self.allowedOrigins = allowedOrigins
    }
}
