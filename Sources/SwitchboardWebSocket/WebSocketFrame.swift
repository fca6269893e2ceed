/// Frame encoding for both roles (RFC 6455 §5.2): unmasked from a server, masked from a client.
@usableFromInline package enum WebSocketFrame {
    /// Size of the header for a payload of `payloadCount` bytes: 2, 4 or 10 (minimal length
    /// form), plus 4 for a mask.
    @inlinable
    package static func headerSize(payloadCount: Int, masked: Bool = false) -> Int {
        (payloadCount < 126 ? 2 : (payloadCount <= 0xFFFF ? 4 : 10)) + (masked ? 4 : 0)
    }

    /// Writes a header into `out` (at least 14 bytes), returns its length. `maskKey`, when
    /// given, sets the mask bit and follows the length (low byte first, as ``Masking`` takes it);
    /// the caller masks the payload with the same key.
    @inlinable
    package static func writeHeader(
        opcode: WebSocketOpcode, payloadCount: Int, fin: Bool, rsv1: Bool, maskKey: UInt32? = nil,
        into out: UnsafeMutableRawPointer
    ) -> Int {
        out.storeBytes(of: (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode.rawValue, as: UInt8.self)
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        let length: Int
        if payloadCount < 126 {
            out.storeBytes(of: maskBit | UInt8(truncatingIfNeeded: payloadCount), toByteOffset: 1, as: UInt8.self)
            length = 2
        } else if payloadCount <= 0xFFFF {
            out.storeBytes(of: maskBit | 126, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(truncatingIfNeeded: payloadCount).bigEndian, toByteOffset: 2, as: UInt16.self)
            length = 4
        } else {
            out.storeBytes(of: maskBit | 127, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt64(payloadCount).bigEndian, toByteOffset: 2, as: UInt64.self)
            length = 10
        }
        guard let maskKey else { return length }
        out.storeBytes(of: maskKey.littleEndian, toByteOffset: length, as: UInt32.self)
        return length + 4
    }

    /// Writes one complete frame (header, then the payload, masked when `maskKey` is given) at
    /// `out`, which has room for ``headerSize(payloadCount:masked:)`` + `payload.count` bytes.
    /// Returns the bytes written. The one place a frame is laid out: `encode` and the load
    /// generator's in-place writer both call it. Inlinable: it is the load generator's hot path.
    @inlinable
    package static func write(
        opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer, fin: Bool = true, rsv1: Bool = false,
        maskKey: UInt32? = nil, into out: UnsafeMutableRawPointer
    ) -> Int {
        let count = payload.count
        let header = writeHeader(opcode: opcode, payloadCount: count, fin: fin, rsv1: rsv1, maskKey: maskKey, into: out)
        if let source = payload.baseAddress, count > 0 {
            if let maskKey {
                _ = Masking.apply(key: maskKey, phase: 0, source: source, destination: out + header, count: count)
            } else {
                (out + header).copyMemory(from: source, byteCount: count)
            }
        }
        return header + count
    }

    /// Encodes a single frame: header + payload, in one allocation. Unmasked (server role) frames
    /// serve fan-out: encode once, send the same bytes to many connections.
    package static func encode(
        opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer, fin: Bool = true, rsv1: Bool = false,
        maskKey: UInt32? = nil
    ) -> [UInt8] {
        let total = headerSize(payloadCount: payload.count, masked: maskKey != nil) + payload.count
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            initialized = write(opcode: opcode, payload: payload, fin: fin, rsv1: rsv1, maskKey: maskKey,
                                into: UnsafeMutableRawPointer(buffer.baseAddress!))
            assert(initialized == total)
        }
    }

    /// Whether an encoded server frame is a pong (how an owner tells the codec's pong replies
    /// from its close frame among `.write` events, to coalesce them).
    package static func isPong(_ frame: [UInt8]) -> Bool { frame.first == 0x80 | WebSocketOpcode.pong.rawValue }

    /// The payload of a close frame: `code`, then `reason` truncated at a UTF-8 character
    /// boundary so the payload stays within the 125-byte control frame limit.
    package static func closePayload(code: UInt16, reason: String) -> [UInt8] {
        var payload: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var utf8 = Array(reason.utf8)
        if utf8.count > 123 {
            var end = 123
            // Back up over continuation bytes so the cut never splits a character.
            while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }
            utf8.removeSubrange(end...)
        }
        payload.append(contentsOf: utf8)
        return payload
    }

    /// A close frame carrying `code` and `reason` (see ``closePayload(code:reason:)``).
    package static func close(code: UInt16, reason: String, maskKey: UInt32? = nil) -> [UInt8] {
        closePayload(code: code, reason: reason).withUnsafeBytes { encode(opcode: .close, payload: $0, maskKey: maskKey) }
    }
}
