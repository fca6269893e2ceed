import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Handshake

let webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (RFC 6455 4.2.2).
public func webSocketAccept(forKey key: String) -> String {
    let input = Array((key + webSocketGUID).utf8)
    var out = [CChar](repeating: 0, count: 32)
    let n = input.withUnsafeBufferPointer { sb_sha1_base64($0.baseAddress, $0.count, &out) }
    precondition(n == 28, "sb_sha1_base64 failed")
    return String(decoding: out[0..<28].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A fresh random Sec-WebSocket-Key: base64 of 16 random bytes (24 characters).
public func makeWebSocketKey() -> String {
    var raw = [UInt8](repeating: 0, count: 16)
    // The call stays outside the precondition: a check must never carry the work it checks.
    let status = sb_random_bytes(&raw, 16)
    precondition(status == 0, "sb_random_bytes failed")
    return base64(raw)
}

func base64(_ bytes: [UInt8]) -> String {
    let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    var i = 0
    while i + 3 <= bytes.count {
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
        out += [table[Int(v >> 18 & 63)], table[Int(v >> 12 & 63)], table[Int(v >> 6 & 63)], table[Int(v & 63)]]
        i += 3
    }
    let rest = bytes.count - i
    if rest == 1 {
        let v = UInt32(bytes[i]) << 16
        out += [table[Int(v >> 18 & 63)], table[Int(v >> 12 & 63)], 61, 61]
    } else if rest == 2 {
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
        out += [table[Int(v >> 18 & 63)], table[Int(v >> 12 & 63)], table[Int(v >> 6 & 63)], 61]
    }
    return String(decoding: out, as: UTF8.self)
}

/// The client side of the opening handshake.
public struct ClientHandshake: Sendable {
    public let key: String
    public let expectedAccept: String
    public let request: [UInt8]

    public init(url: WebSocketURL, extraHeaders: [String] = [], key: String = makeWebSocketKey()) {
        self.key = key
        self.expectedAccept = webSocketAccept(forKey: key)
        var text = "GET \(url.path) HTTP/1.1\r\n"
        text += "Host: \(url.hostHeader)\r\n"
        text += "Upgrade: websocket\r\n"
        text += "Connection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(key)\r\n"
        text += "Sec-WebSocket-Version: 13\r\n"
        for h in extraHeaders { text += h + "\r\n" }
        text += "\r\n"
        request = Array(text.utf8)
    }

    public enum Outcome: Equatable, Sendable {
        /// More bytes are needed.
        case incomplete
        /// The upgrade succeeded; `headerBytes` bytes belong to the response head.
        case accepted(headerBytes: Int)
        case rejected(String)
    }

    /// Checks a server response head: status 101, `Upgrade: websocket`, `Connection: upgrade`
    /// and a Sec-WebSocket-Accept equal to base64(SHA-1(key + GUID)).
    public func validate(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        guard let end = findHeaderEnd(bytes) else {
            return bytes.count > 16_384 ? .rejected("handshake response head over 16 KiB") : .incomplete
        }
        let head = String(decoding: bytes[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { return .rejected("empty handshake response") }
        let status = lines.removeFirst()
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.") else { return .rejected("bad status line '\(status)'") }
        guard parts[1] == "101" else { return .rejected("expected status 101, got '\(status)'") }
        var upgrade = false, connection = false
        var accept: Substring? = nil
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return .rejected("malformed header line '\(line)'") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces
            switch name {
            case "upgrade": upgrade = value.lowercased() == "websocket"
            case "connection":
                connection = value.split(separator: ",").contains { $0.trimmingSpaces.lowercased() == "upgrade" }
            case "sec-websocket-accept": accept = value
            default: break
            }
        }
        guard upgrade else { return .rejected("missing 'Upgrade: websocket'") }
        guard connection else { return .rejected("missing 'Connection: Upgrade'") }
        guard let a = accept else { return .rejected("missing Sec-WebSocket-Accept") }
        guard a == expectedAccept else { return .rejected("wrong Sec-WebSocket-Accept '\(a)' (expected '\(expectedAccept)')") }
        return .accepted(headerBytes: end + 4)
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

/// Offset of "\r\n\r\n", or nil.
func findHeaderEnd(_ b: UnsafeRawBufferPointer) -> Int? {
    guard b.count >= 4 else { return nil }
    var i = 0
    while i + 3 < b.count {
        if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        i += 1
    }
    return nil
}

// MARK: - Buffers

/// A growable byte buffer with a consumed prefix: written at `tail`, drained from `head`.
/// Manually managed (call `free()`), so the hot path never allocates once it has grown.
struct ByteBuffer {
    var base: UnsafeMutableRawPointer? = nil
    var capacity = 0
    var head = 0
    var tail = 0

    var count: Int { tail - head }
    var isEmpty: Bool { tail == head }
    var readPointer: UnsafeMutableRawPointer { base! + head }

    /// Returns room for `n` bytes at the tail (compacting or growing as needed); call `commit`.
    @inline(__always)
    mutating func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        if capacity - tail < n { makeRoom(n) }
        return base! + tail
    }

    mutating func makeRoom(_ n: Int) {
        if head > 0 {
            if tail > head { memmove(base!, base! + head, tail - head) }
            tail -= head
            head = 0
        }
        if capacity - tail >= n { return }
        var newCapacity = Swift.max(capacity * 2, 4096)
        while newCapacity - tail < n { newCapacity *= 2 }
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        if tail > 0 { fresh.copyMemory(from: base!, byteCount: tail) }
        base?.deallocate()
        base = fresh
        capacity = newCapacity
    }

    @inline(__always) mutating func commit(_ n: Int) { tail += n }

    @inline(__always) mutating func consume(_ n: Int) {
        head += n
        if head >= tail { head = 0; tail = 0 }
    }

    mutating func append(_ p: UnsafeRawPointer, _ n: Int) {
        guard n > 0 else { return }
        reserve(n).copyMemory(from: p, byteCount: n)
        tail += n
    }

    mutating func clear() { head = 0; tail = 0 }

    mutating func free() {
        base?.deallocate()
        base = nil
        capacity = 0
        head = 0
        tail = 0
    }
}

/// FIFO of Int64 timestamps (send or intended-send times), growable, power-of-two sized.
struct TimeRing {
    var storage: UnsafeMutablePointer<Int64>? = nil
    var mask = -1
    var head = 0
    var count = 0

    @inline(__always) mutating func push(_ v: Int64) {
        if count == mask + 1 { grow() }
        storage![(head + count) & mask] = v
        count += 1
    }

    @inline(__always) mutating func pop() -> Int64? {
        guard count > 0 else { return nil }
        let v = storage![head]
        head = (head + 1) & mask
        count -= 1
        return v
    }

    mutating func grow() {
        let old = mask + 1
        let newSize = Swift.max(old * 2, 16)
        let fresh = UnsafeMutablePointer<Int64>.allocate(capacity: newSize)
        for i in 0..<count { fresh[i] = storage![(head + i) & mask] }
        storage?.deallocate()
        storage = fresh
        mask = newSize - 1
        head = 0
    }

    mutating func free() {
        storage?.deallocate()
        storage = nil
        mask = -1
        head = 0
        count = 0
    }
}

/// wyrand: fast per-thread generator for frame masks (seeded from the system CSPRNG).
struct FastRandom {
    var state: UInt64
    init() {
        var seed: UInt64 = 0
        let status = withUnsafeMutableBytes(of: &seed) { sb_random_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        precondition(status == 0, "sb_random_bytes failed")
        state = seed
    }
    @inline(__always) mutating func next() -> UInt64 {
        state &+= 0xA076_1D64_78BD_642F
        let m = state.multipliedFullWidth(by: state ^ 0xE703_7ED1_A0B4_28DB)
        return m.high ^ m.low
    }
}

// MARK: - Frames

public enum Opcode: UInt8, Sendable {
    case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
}

/// Header length of a client (masked) frame with `payload` bytes.
@inline(__always) func maskedHeaderLength(_ payload: Int) -> Int {
    payload < 126 ? 6 : (payload < 65_536 ? 8 : 14)
}

/// Writes a FIN frame header with the mask bit and `mask` at `p`. Returns the header length.
@inline(__always) func writeMaskedHeader(_ p: UnsafeMutableRawPointer, opcode: UInt8, payload: Int, mask: UInt32) -> Int {
    p.storeBytes(of: 0x80 | opcode, as: UInt8.self)
    var h: Int
    if payload < 126 {
        p.storeBytes(of: 0x80 | UInt8(payload), toByteOffset: 1, as: UInt8.self)
        h = 2
    } else if payload < 65_536 {
        p.storeBytes(of: 0x80 | 126, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 2, as: UInt16.self)
        h = 4
    } else {
        p.storeBytes(of: 0x80 | 127, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt64(payload).bigEndian, toByteOffset: 2, as: UInt64.self)
        h = 10
    }
    p.storeBytes(of: mask, toByteOffset: h, as: UInt32.self)  // mask bytes in memory order
    return h + 4
}

/// dst[i] = src[i] ^ mask[i % 4], eight bytes at a time. `mask` is in memory byte order.
@inline(__always) func maskCopy(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ n: Int, mask: UInt32) {
    let wide = UInt64(mask) | UInt64(mask) << 32
    var i = 0
    while i + 8 <= n {
        let v = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        dst.storeBytes(of: v ^ wide, toByteOffset: i, as: UInt64.self)
        i += 8
    }
    while i < n {
        let m = UInt8(truncatingIfNeeded: mask >> (UInt32(i & 3) * 8))
        dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self) ^ m, toByteOffset: i, as: UInt8.self)
        i += 1
    }
}

/// Appends one complete masked client frame carrying `payload` to `buffer`.
@inline(__always) func appendMaskedFrame(_ buffer: inout ByteBuffer, opcode: UInt8, payload: UnsafeRawPointer?, count: Int, mask: UInt32) {
    let p = buffer.reserve(maskedHeaderLength(count) + count)
    let h = writeMaskedHeader(p, opcode: opcode, payload: count, mask: mask)
    if count > 0 { maskCopy(p + h, payload!, count, mask: mask) }
    buffer.commit(h + count)
}

/// Encodes one masked client frame (for tests and tools; the load loop writes in place).
public func encodeClientFrame(opcode: Opcode, payload: [UInt8], mask: UInt32) -> [UInt8] {
    var b = ByteBuffer()
    defer { b.free() }
    payload.withUnsafeBytes { appendMaskedFrame(&b, opcode: opcode.rawValue, payload: $0.baseAddress, count: $0.count, mask: mask) }
    return Array(UnsafeRawBufferPointer(start: b.readPointer, count: b.count))
}

/// A server frame header parsed from a byte buffer.
struct FrameHeader {
    var fin: Bool
    var opcode: UInt8
    var masked: Bool
    var mask: UInt32
    var headerLength: Int
    var payloadLength: Int
}

/// Parses a frame header (any of the three length forms, masked or not). Returns nil when
/// more bytes are needed; payloadLength < 0 flags a length the harness refuses (> 2^62).
@inline(__always) func parseFrameHeader(_ p: UnsafeRawPointer, _ avail: Int) -> FrameHeader? {
    guard avail >= 2 else { return nil }
    let b0 = p.load(as: UInt8.self)
    let b1 = p.load(fromByteOffset: 1, as: UInt8.self)
    let masked = b1 & 0x80 != 0
    var len = Int(b1 & 0x7F)
    var h = 2
    if len == 126 {
        guard avail >= 4 else { return nil }
        len = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        h = 4
    } else if len == 127 {
        guard avail >= 10 else { return nil }
        let v = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
        len = v > UInt64(1 << 62) ? -1 : Int(v)
        h = 10
    }
    var mask: UInt32 = 0
    if masked {
        guard avail >= h + 4 else { return nil }
        mask = p.loadUnaligned(fromByteOffset: h, as: UInt32.self)
        h += 4
    }
    return FrameHeader(fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, masked: masked, mask: mask, headerLength: h, payloadLength: len)
}

// MARK: - Fanout marker

/// Writes "#sb:PUB:SEQ:NANOS#" at `p` (at most 64 bytes). Returns its length.
@inline(__always) func writeMarker(_ p: UnsafeMutableRawPointer, publisher: Int, seq: Int64, nanos: Int64) -> Int {
    var n = 0
    @inline(__always) func put(_ c: UInt8) { p.storeBytes(of: c, toByteOffset: n, as: UInt8.self); n += 1 }
    @inline(__always) func putNumber(_ v: Int64) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var x = UInt64(max(v, 0))
        var k = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[k] = UInt8(48 + x % 10)
                x /= 10
                k += 1
            } while x > 0
            while k > 0 { k -= 1; put(d[k]) }
        }
    }
    put(35); put(115); put(98); put(58)  // "#sb:"
    putNumber(Int64(publisher)); put(58)
    putNumber(seq); put(58)
    putNumber(nanos); put(35)
    return n
}

/// Finds the first "#sb:PUB:SEQ:NANOS#" marker in `p[0..<n]`.
@inline(__always) func findMarker(_ p: UnsafeRawPointer, _ n: Int) -> (publisher: Int, seq: Int64, nanos: Int64)? {
    var i = 0
    while i + 10 <= n {
        guard let hit = memchr(p + i, 35, n - i) else { return nil }
        let at = p.distance(to: UnsafeRawPointer(hit))
        if at + 10 <= n && p.load(fromByteOffset: at + 1, as: UInt8.self) == 115
            && p.load(fromByteOffset: at + 2, as: UInt8.self) == 98 && p.load(fromByteOffset: at + 3, as: UInt8.self) == 58 {
            var j = at + 4
            var fields: (Int64, Int64, Int64) = (0, 0, 0)
            var ok = true
            for f in 0..<3 {
                var v: Int64 = 0
                let start = j
                while j < n, case let c = p.load(fromByteOffset: j, as: UInt8.self), c >= 48 && c <= 57, j - start < 19 {
                    v = v * 10 + Int64(c - 48)
                    j += 1
                }
                let terminator: UInt8 = f == 2 ? 35 : 58
                guard j > start, j < n, p.load(fromByteOffset: j, as: UInt8.self) == terminator else { ok = false; break }
                j += 1
                if f == 0 { fields.0 = v } else if f == 1 { fields.1 = v } else { fields.2 = v }
            }
            if ok { return (Int(fields.0), fields.1, fields.2) }
        }
        i = at + 1
    }
    return nil
}
