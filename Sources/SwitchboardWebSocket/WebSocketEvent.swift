/// What ``WebSocketConnection`` tells its owner, in order.
package enum WebSocketEvent: Sendable {
    /// A complete text message, validated by the codec as it arrived (RFC 3629, fail-fast). A
    /// `String` because that is what every owner hands on: a message whole in one receive
    /// buffer is unmasked straight into the string's storage, with no array in between.
    case text(String)
    /// A complete binary message.
    case binary([UInt8])
    /// Bytes the owner must send now, in order (pong replies, the close reply or the failure close frame).
    case write([UInt8])
    /// A pong arrived (the owner may use it for keep-alive).
    case pong([UInt8])
    /// The close handshake finished or the peer's close was answered (a `.write` with our close frame
    /// came first if needed): the owner closes TCP after flushing. `code` is the peer's code (1005 if none).
    case closed(code: UInt16, reason: String)
    /// Protocol failure: a `.write` with a close frame carrying `code` came first (unless we had already
    /// sent a close); the owner closes TCP after flushing and ignores further input.
    case failed(code: UInt16, reason: String)
}
