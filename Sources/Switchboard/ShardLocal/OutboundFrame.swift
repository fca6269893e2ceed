import SwitchboardIO
import SwitchboardWebSocket

extension OutboundBytes {
    /// One unmasked frame, encoded straight into the buffer that is queued (one allocation,
    /// one copy of the payload: no intermediate array).
    static func webSocketFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> OutboundBytes {
        let total = WebSocketFrame.headerSize(payloadCount: payload.count) + payload.count
        return OutboundBytes(capacity: total) { out in
            writeWebSocketFrame(opcode, payload, into: out)
        }
    }

    /// ``webSocketFrame(_:_:)`` as the +1 reference a send takes over (`Shard.send(_:retained:)`).
    static func retainedWebSocketFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> Unmanaged<Storage> {
        let total = WebSocketFrame.headerSize(payloadCount: payload.count) + payload.count
        let storage = Storage.create(minimumCapacity: total) { buffer in
            buffer.withUnsafeMutablePointerToElements {
                writeWebSocketFrame(opcode, payload, into: UnsafeMutableRawBufferPointer(start: $0, count: total))
            }
        }
        return .passRetained(storage)
    }

    /// Writes one unmasked frame with `payload` at the start of `out` (which has room for it);
    /// returns its length. (Also how `OutboundFramePool` rewrites a recycled block.)
    @inline(__always)
    static func writeWebSocketFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer,
                                    into out: UnsafeMutableRawBufferPointer) -> Int {
        let total = WebSocketFrame.headerSize(payloadCount: payload.count) + payload.count
        precondition(total <= out.count)
        let header = WebSocketFrame.writeHeader(opcode: opcode, payloadCount: payload.count, fin: true, rsv1: false,
                                                into: out.baseAddress!)
        assert(header == total - payload.count)
        if let source = payload.baseAddress, payload.count > 0 {
            (out.baseAddress! + header).copyMemory(from: source, byteCount: payload.count)
        }
        return total
    }

    /// The frame for a whole message, uncompressed.
    static func webSocketFrame(_ message: SocketMessage) -> OutboundBytes {
        message.withFrameParts { webSocketFrame($0, $1) }
    }
}

extension SocketMessage {
    /// Runs `body` with the message's opcode and bytes, read in place.
    @inline(__always)
    func withFrameParts<R>(_ body: (WebSocketOpcode, UnsafeRawBufferPointer) -> R) -> R {
        switch self {
        case .text(let s):
            // Non-mutating where the string is contiguous (always, for a native one): `var s` and
            // `withUTF8` copied it, a retain and a release per message.
            if let result = s.utf8.withContiguousStorageIfAvailable({ body(.text, UnsafeRawBufferPointer($0)) }) {
                return result
            }
            var copy = s
            return copy.withUTF8 { body(.text, UnsafeRawBufferPointer($0)) }
        case .binary(let b): return b.withUnsafeBytes { body(.binary, $0) }
        }
    }
}
