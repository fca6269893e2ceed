import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

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

// MARK: - Frames

// Frame layout, masking and header parsing are SwitchboardWebSocket's (WebSocketFrame,
// Masking, WebSocketFrameHeader): the same code the server and the SDK run.

/// Appends one complete masked client frame carrying `payload` to `buffer`, written in place.
@inline(__always) func appendMaskedFrame(_ buffer: inout ByteBuffer, opcode: UInt8, payload: UnsafeRawPointer?, count: Int, mask: UInt32) {
    // The bench only sends the opcodes WebSocketOpcode names (its own constants).
    guard let code = WebSocketOpcode(rawValue: opcode) else { preconditionFailure("reserved opcode \(opcode)") }
    let p = buffer.reserve(WebSocketFrame.headerSize(payloadCount: count, masked: true) + count)
    buffer.commit(WebSocketFrame.write(opcode: code, payload: UnsafeRawBufferPointer(start: payload, count: count), maskKey: mask, into: p))
}

/// Encodes one masked client frame (for tests and tools; the load loop writes in place).
package func encodeClientFrame(opcode: WebSocketOpcode, payload: [UInt8], mask: UInt32) -> [UInt8] {
    payload.withUnsafeBytes { WebSocketFrame.encode(opcode: opcode, payload: $0, maskKey: mask) }
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
