/// A complete WebSocket message lent to a handler for the duration of one call: its bytes are
/// read where the broker unmasked them, with no `String` or array made for it (as uWebSockets
/// hands its handlers a `string_view`).
///
/// A ``WorkerHandler`` receives it in
/// `handleSocketMessage(_ message: borrowing SocketMessageView, socketId:token:)`. Read the
/// bytes with ``withUnsafeBytes(_:)``, send them on with the ``ShardContext``'s `send(_:_:)` or
/// `publish(_:_:)` for a view (no copy but into the frame), or make an owned ``SocketMessage``
/// with ``message`` when they must outlive the call. A text message's bytes are valid UTF-8:
/// the broker validated them before the call (invalid text closed the socket with 1007 and no
/// call was made).
///
/// Not copyable, and passed `borrowing`: a handler cannot keep it. The pointer that
/// ``withUnsafeBytes(_:)`` gives must not escape its closure either: the memory is the shard's
/// and holds the next message after the call returns.
public struct SocketMessageView: ~Copyable {
    /// Whether the message is text (its bytes are valid UTF-8) rather than binary.
    public let isText: Bool
    /// The lent bytes; unused when `owned` holds the message.
    @usableFromInline let lent: UnsafeRawBufferPointer
    /// The message when the broker already holds it as a value (a binary message assembled
    /// from fragments or decompressed, a message whole in one read but larger than the shard's
    /// lending buffer), so that ``message`` hands it over without a copy. An assembled text
    /// message is lent instead: making it a `String` would copy and validate it again.
    @usableFromInline let owned: SocketMessage?

    /// Lends `bytes` (the shard's; valid for the call being made). A text message's bytes must
    /// be valid UTF-8.
    @inline(__always)
    init(isText: Bool, lending bytes: UnsafeRawBufferPointer) {
        self.isText = isText
        lent = bytes
        owned = nil
    }

    /// A view of a message held as a value: for a handler that forwards the messages it
    /// receives as values to another handler's view method, and for tests.
    public init(_ message: SocketMessage) {
        if case .text = message { isText = true } else { isText = false }
        lent = UnsafeRawBufferPointer(start: nil, count: 0)
        owned = message
    }

    /// Whether the bytes are lent (`lent`), not held by `owned`.
    @inline(__always) var isLent: Bool { owned == nil }

    /// The message's length in bytes (a text message's UTF-8 code units).
    public var count: Int {
        switch owned {
        case .text(let text)?: return text.utf8.count
        case .binary(let bytes)?: return bytes.count
        case nil: return lent.count
        }
    }

    /// Runs `body` over the message's bytes. The pointer is valid only inside `body`.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch owned {
        case nil: return try body(lent)
        case .text(let text)?:
            var contiguous = text
            return try contiguous.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
        case .binary(let bytes)?: return try bytes.withUnsafeBytes(body)
        }
    }

    /// The message as an owned value that may be kept: its bytes copied into a `String` (text)
    /// or an array (binary), unless the broker already held it as one.
    public var message: SocketMessage {
        if let owned { return owned }
        // Validated by the codec before the handler's call; `String(decoding:)` checks again
        // and could only repair what the codec let through, which it never does.
        return isText ? .text(String(decoding: lent, as: UTF8.self)) : .binary([UInt8](lent))
    }

    /// The text of a text message (copied into a `String`), nil for a binary one.
    public var text: String? {
        guard isText else { return nil }
        if case .text(let text)? = owned { return text }
        return String(decoding: lent, as: UTF8.self)
    }
}
