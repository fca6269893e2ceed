/// Server-to-client frame encoding (unmasked, RFC 6455 §5.2).
package enum WebSocketFrame {
    /// Size of the header for a payload of `payloadCount` bytes: 2, 4 or 10 (minimal length form).
    @inlinable
    package static func headerSize(payloadCount: Int) -> Int {
        payloadCount < 126 ? 2 : (payloadCount <= 0xFFFF ? 4 : 10)
    }

    /// Writes a header into `out` (at least 10 bytes), returns its length.
    @inlinable
    package static func writeHeader(
        opcode: WebSocketOpcode, payloadCount: Int, fin: Bool, rsv1: Bool, into out: UnsafeMutableRawPointer
    ) -> Int {
        out.storeBytes(of: (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode.rawValue, as: UInt8.self)
        if payloadCount < 126 {
            out.storeBytes(of: UInt8(truncatingIfNeeded: payloadCount), toByteOffset: 1, as: UInt8.self)
            return 2
        }
        if payloadCount <= 0xFFFF {
            out.storeBytes(of: 126, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(truncatingIfNeeded: payloadCount).bigEndian, toByteOffset: 2, as: UInt16.self)
            return 4
        }
        out.storeBytes(of: 127, toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt64(payloadCount).bigEndian, toByteOffset: 2, as: UInt64.self)
        return 10
    }

    /// Encodes a single unmasked frame (server -> client): header + payload, in one allocation.
    /// Used for fan-out: encode once, send the same bytes to many connections.
    package static func encode(
        opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer, fin: Bool = true, rsv1: Bool = false
    ) -> [UInt8] {
        let count = payload.count
        let total = headerSize(payloadCount: count) + count
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let out = UnsafeMutableRawPointer(buffer.baseAddress!)
            let header = writeHeader(opcode: opcode, payloadCount: count, fin: fin, rsv1: rsv1, into: out)
            if let source = payload.baseAddress, count > 0 {
                (out + header).copyMemory(from: source, byteCount: count)
            }
            initialized = total
        }
    }

    /// A close frame carrying `code` and `reason` (the reason is truncated at a UTF-8 character
    /// boundary so the payload stays within the 125-byte control frame limit).
    /// Whether an encoded server frame is a pong (how an owner tells the codec's pong replies
    /// from its close frame among `.write` events, to coalesce them).
    package static func isPong(_ frame: [UInt8]) -> Bool { frame.first == 0x80 | WebSocketOpcode.pong.rawValue }

    package static func close(code: UInt16, reason: String) -> [UInt8] {
        var payload: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var utf8 = Array(reason.utf8)
        if utf8.count > 123 {
            var end = 123
            // Back up over continuation bytes so the cut never splits a character.
            while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }
            utf8.removeSubrange(end...)
        }
        payload.append(contentsOf: utf8)
        return payload.withUnsafeBytes { encode(opcode: .close, payload: $0) }
    }
}
