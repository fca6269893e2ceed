import SwitchboardIO
import SwitchboardWebSocket

extension OutboundBytes {
    /// One unmasked frame, encoded straight into the buffer that is queued (one allocation,
    /// one copy of the payload: no intermediate array).
    static func webSocketFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> OutboundBytes {
        let total = WebSocketFrame.headerSize(payloadCount: payload.count) + payload.count
        return OutboundBytes(capacity: total) { out in
            let header = WebSocketFrame.writeHeader(opcode: opcode, payloadCount: payload.count, fin: true, rsv1: false,
                                                    into: out.baseAddress!)
            assert(header == total - payload.count)
            if let source = payload.baseAddress, payload.count > 0 {
                (out.baseAddress! + header).copyMemory(from: source, byteCount: payload.count)
            }
            return total
        }
    }

    /// The frame for a whole message, uncompressed.
    static func webSocketFrame(_ message: SocketMessage) -> OutboundBytes {
        switch message {
        case .text(let s):
            // Non-mutating where the string is contiguous (always, for a native one): `var s` and
            // `withUTF8` copied it, a retain and a release per message.
            if let frame = s.utf8.withContiguousStorageIfAvailable({ webSocketFrame(.text, UnsafeRawBufferPointer($0)) }) {
                return frame
            }
            var copy = s
            return copy.withUTF8 { webSocketFrame(.text, UnsafeRawBufferPointer($0)) }
        case .binary(let b): return b.withUnsafeBytes { webSocketFrame(.binary, $0) }
        }
    }
}
