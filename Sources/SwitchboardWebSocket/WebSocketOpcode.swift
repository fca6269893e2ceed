/// Frame opcodes defined by RFC 6455 §5.2. The reserved values 3-7 and 11-15 have no case:
/// receiving one fails the connection with 1002.
@usableFromInline package enum WebSocketOpcode: UInt8, Sendable {
    /// Continues a fragmented data message.
    case continuation = 0
    /// First frame of a text (UTF-8) message.
    case text = 1
    /// First frame of a binary message.
    case binary = 2
    /// Close control frame.
    case close = 8
    /// Ping control frame.
    case ping = 9
    /// Pong control frame.
    case pong = 10

    /// Control frames have the high opcode bit set (RFC 6455 §5.5).
    @inlinable
    package var isControl: Bool { rawValue & 0x08 != 0 }
}
