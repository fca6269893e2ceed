import SwitchboardHTTP

/// Outcome of an opening handshake.
package enum WebSocketHandshakeResult: Sendable {
    /// Send `response` (a 101) and switch the connection to WebSocket framing; `deflate` is non-nil
    /// when permessage-deflate was negotiated and must be passed to ``WebSocketConnection``.
    case accept(response: HTTPResponse, deflate: PerMessageDeflateParameters?)
    /// Send this error response and keep speaking HTTP (or close).
    case reject(HTTPResponse)
}
