/// A minimal RFC 6455 client over `TestClient`, for tests: masked frames out, frames in.
public struct TestFrame: Equatable, CustomStringConvertible {
    public var fin: Bool
    public var rsv1: Bool
    public var opcode: UInt8
    public var payload: [UInt8]
    public var text: String { String(decoding: payload, as: UTF8.self) }
    /// For close frames: the code, or nil when the payload is empty.
    public var closeCode: UInt16? { payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    public var description: String { "frame(op \(opcode), fin \(fin), \(payload.count) bytes)" }
    public init(fin: Bool, rsv1: Bool, opcode: UInt8, payload: [UInt8]) {
        self.fin = fin
        self.rsv1 = rsv1
        self.opcode = opcode
        self.payload = payload
    }
}

extension TestClient {
    /// Sends an upgrade request and reads the 101 (or refusal), its head only. The key is the
    /// RFC's sample.
    public func upgrade(path: String = "/", headers: String = "") throws -> TestResponse {
        try sendUpgradeRequest(path: path, headers: headers)
        return try readResponse(headOnly: true)
    }

    /// Sends `upgrade`'s request and reads nothing (a refusal's body: `readResponse()`).
    public func sendUpgradeRequest(path: String = "/", headers: String = "") throws {
        try send("GET \(path) HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(headers)\r\n")
    }

    /// Builds a client frame (masked unless told otherwise).
    public static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true,
                             mask: [UInt8] = [0x37, 0xfa, 0x21, 0x3d]) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode]
        let m: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            out.append(m | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out.append(m | 126)
            out += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(m | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        if masked {
            out += mask
            for (i, b) in payload.enumerated() { out.append(b ^ mask[i & 3]) }
        } else {
            out += payload
        }
        return out
    }

    public func sendFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true) throws {
        try send(Self.frame(opcode: opcode, payload: payload, fin: fin, rsv1: rsv1, masked: masked))
    }

    public func sendText(_ text: String) throws { try sendFrame(opcode: 1, payload: Array(text.utf8)) }

    /// Reads one server frame (servers never mask).
    public func readFrame() throws -> TestFrame {
        try fill(atLeast: 2)
        let b0 = buffered[0], b1 = buffered[1]
        precondition(b1 & 0x80 == 0, "server frames must not be masked")
        var length = Int(b1 & 0x7F)
        var header = 2
        if length == 126 {
            try fill(atLeast: 4)
            length = Int(buffered[2]) << 8 | Int(buffered[3])
            header = 4
        } else if length == 127 {
            try fill(atLeast: 10)
            length = 0
            for i in 2..<10 { length = length << 8 | Int(buffered[i]) }
            header = 10
        }
        try fill(atLeast: header + length)
        let frame = TestFrame(fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0F,
                              payload: Array(buffered[header..<(header + length)]))
        removeBuffered(header + length)
        return frame
    }
}
