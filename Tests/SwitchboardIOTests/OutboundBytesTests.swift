@testable import SwitchboardIO
import CLiburing
import Testing

/// Issue 16 item 3: `OutboundBytes` is one allocation (the bytes tail-allocated after the
/// count in a `ManagedBuffer`), made through the same initializers as before.
@Suite("OutboundBytes")
struct OutboundBytesTests {
    @Test("every initializer holds exactly the bytes it was given")
    func contents() {
        #expect(OutboundBytes([1, 2, 3]).array == [1, 2, 3])
        #expect(OutboundBytes(adopting: [9]).array == [9])
        #expect(OutboundBytes([]).count == 0)
        #expect(OutboundBytes("héllo").array == Array("héllo".utf8))
        let source: [UInt8] = Array(0...255)
        #expect(source.withUnsafeBytes { OutboundBytes($0) }.array == source)
        // `fill` may write less than the capacity: the count is what it wrote.
        let partial = OutboundBytes(capacity: 100) { out in
            out.storeBytes(of: 0xAB, toByteOffset: 0, as: UInt8.self)
            out.storeBytes(of: 0xCD, toByteOffset: 1, as: UInt8.self)
            return 2
        }
        #expect(partial.count == 2 && partial.array == [0xAB, 0xCD])
        #expect(partial.bytes.count == 2 && partial.base == partial.bytes.baseAddress!)
    }

    @Test("the bytes live inside the heap block: same address for its whole life, right after its header")
    func bytesAreTailAllocated() {
        let bytes = OutboundBytes([UInt8](repeating: 7, count: 64))
        let address = bytes.base
        let copy = bytes
        #expect(copy.base == address)
        let object = UnsafeRawPointer(Unmanaged.passUnretained(bytes.storage).toOpaque())
        // The object's 16-byte header, then the count, then the bytes.
        #expect(address == object + 24)
        for _ in 0..<3 { #expect(bytes.base == address) }
        #expect(bytes.bytes.allSatisfy { $0 == 7 })
    }

    @Test("one heap block per instance: a 2-byte frame takes one 48-byte malloc chunk, not two blocks")
    func oneAllocation() {
        // The smallest of several measurements: the heap counter is process-wide and other
        // threads may allocate meanwhile.
        var best = Double.infinity
        for _ in 0..<5 {
            let count = 20_000
            var kept: [OutboundBytes] = []
            kept.reserveCapacity(count)
            let before = Int(sb_malloc_in_use())
            for _ in 0..<count { kept.append(OutboundBytes([0x8A, 0x00])) }
            let perInstance = Double(Int(sb_malloc_in_use()) - before) / Double(count)
            best = min(best, perInstance)
            #expect(kept.count == count)
        }
        // 16-byte object header + 8-byte count + 2 bytes = 26, a 48-byte glibc chunk. Two
        // blocks (an object pointing at its own malloc'ed bytes) took 48 + 32 = 80.
        #expect(best < 56, "measured \(best) heap bytes per 2-byte OutboundBytes")
        #expect(best >= 32, "measured \(best) heap bytes per 2-byte OutboundBytes")
    }
}
