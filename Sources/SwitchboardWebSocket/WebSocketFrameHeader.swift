/// One frame header as it stands on the wire (RFC 6455 §5.2), parsed in place.
///
/// Shared by the codec (both roles) and by the load generator, which reads headers straight
/// out of its receive buffer: the one place that knows the three length forms and the mask bit.
@usableFromInline package struct WebSocketFrameHeader {
    /// The first byte: FIN, RSV1-3 and the opcode bits.
    package var byte0: UInt8
    /// The second byte: the mask bit and the 7-bit length.
    package var byte1: UInt8
    /// Declared payload length. The top bit may be set (a protocol error the caller checks).
    @usableFromInline package var payloadLength: UInt64
    /// The masking key (low byte = first mask byte on the wire), 0 when the frame is not masked.
    @usableFromInline package var maskKey: UInt32
    /// Bytes the header takes: 2 to 14.
    @usableFromInline package var headerLength: Int

    @usableFromInline
    init(byte0: UInt8, byte1: UInt8, payloadLength: UInt64, maskKey: UInt32, headerLength: Int) {
        self.byte0 = byte0
        self.byte1 = byte1
        self.payloadLength = payloadLength
        self.maskKey = maskKey
        self.headerLength = headerLength
    }

    package var fin: Bool { byte0 & 0x80 != 0 }
    package var rsv1: Bool { byte0 & 0x40 != 0 }
    package var opcodeBits: UInt8 { byte0 & 0x0F }
    package var isMasked: Bool { byte1 & 0x80 != 0 }

    /// Header length implied by the second byte: 2, plus the extended length, plus the 4-byte mask.
    @inlinable @inline(__always)
    package static func length(secondByte byte1: UInt8) -> Int {
        let base: Int
        switch byte1 & 0x7F {
        case 126: base = 4
        case 127: base = 10
        default: base = 2
        }
        return byte1 & 0x80 != 0 ? base + 4 : base
    }

    /// Parses the header at `pointer`, or returns nil when fewer than its length are available.
    @inlinable @inline(__always)
    package static func parse(_ pointer: UnsafeRawPointer, available: Int) -> WebSocketFrameHeader? {
        guard available >= 2 else { return nil }
        let byte0 = pointer.load(as: UInt8.self)
        let byte1 = pointer.load(fromByteOffset: 1, as: UInt8.self)
        let headerLength = length(secondByte: byte1)
        guard available >= headerLength else { return nil }
        let length: UInt64
        let keyOffset: Int
        switch byte1 & 0x7F {
        case 126:
            length = UInt64(UInt16(bigEndian: pointer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            keyOffset = 4
        case 127:
            length = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            keyOffset = 10
        default:
            length = UInt64(byte1 & 0x7F)
            keyOffset = 2
        }
        // loadUnaligned as little-endian puts the first wire byte low, as Masking expects.
        let key = byte1 & 0x80 != 0
            ? UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: keyOffset, as: UInt32.self)) : 0
        return WebSocketFrameHeader(byte0: byte0, byte1: byte1, payloadLength: length, maskKey: key, headerLength: headerLength)
    }
}
