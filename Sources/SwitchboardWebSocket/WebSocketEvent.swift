/// What ``WebSocketConnection`` tells its owner, in order.
package enum WebSocketEvent: Sendable {
    /// A complete text message, validated by the codec as it arrived (RFC 3629, fail-fast). A
    /// `String` because that is what every owner hands on: a message whole in one receive
    /// buffer is unmasked straight into the string's storage, with no array in between.
    case text(String)
    /// A complete binary message.
    case binary([UInt8])
    /// A complete text message the codec hands over as a value (assembled from fragments,
    /// across reads or inflated, or whole but over the owner's scratch buffer), validated as
    /// ``text(_:)``'s, as its UTF-8 bytes: reported instead of ``text(_:)`` when
    /// the settings ask for it (``WebSocketCodecSettings/textAsBytes``), so that no
    /// `String` is made (a copy and stdlib's second validation) for an owner that lends bytes.
    case textBytes([UInt8])
    /// A complete text (validated as ``text(_:)``'s) or binary message, `count` bytes at the
    /// start of the scratch buffer the owner passed to ``WebSocketConnection/receive(_:maxMessages:scratch:_:)``:
    /// reported instead of ``text(_:)`` or ``binary(_:)`` for a message whole in the bytes given
    /// that fits the scratch buffer, so the owner can lend the bytes without a `String` or an
    /// array (issue 16 item 3). They stay there until the owner uses the buffer again.
    case inScratch(WebSocketOpcode, count: Int)
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
