#if canImport(Glibc)
import Glibc
#endif

/// An immutable, reference-counted run of bytes queued for sending.
///
/// The bytes' address never moves while the instance lives, so the kernel can read them while a
/// send is in flight. The same instance may sit in many connections' send queues at once (a
/// fan-out writes one encoded frame to every subscriber); the last queue to finish with it
/// releases it.
///
/// `@unchecked Sendable` only because `UnsafeRawPointer` is not: the bytes are written once,
/// before `init` returns, and never again, so any thread may read them.
package final class OutboundBytes: @unchecked Sendable {
    package let count: Int
    /// Allocated here and owned by this instance: a pointer that is valid for the instance's
    /// whole life (an array's `withUnsafeBytes` pointer is only valid inside its closure).
    @usableFromInline let base: UnsafeRawPointer

    /// Allocates `capacity` bytes and lets `fill` write them before the buffer is shared.
    /// `fill` returns how many bytes it wrote (at most `capacity`). The way to build bytes
    /// without an intermediate array (one allocation, bytes written in place).
    package init(capacity: Int, fill: (UnsafeMutableRawBufferPointer) -> Int) {
        precondition(capacity >= 0)
        // malloc, not `UnsafeMutableRawPointer.allocate`: Swift's allocate takes the runtime's
        // aligned path (posix_memalign) for every alignment up to 16, about twice malloc's
        // instructions, once per queued frame. malloc's 16-byte alignment is all a send needs.
        guard let storage = malloc(max(capacity, 1)) else { fatalError("OutboundBytes: out of memory (\(capacity) bytes)") }
        let written = fill(UnsafeMutableRawBufferPointer(start: storage, count: capacity))
        precondition(written >= 0 && written <= capacity)
        base = UnsafeRawPointer(storage)
        count = written
    }

    /// Copies an array's bytes. (It used to keep the array and the address `withUnsafeBytes`
    /// gave, past that closure: undefined behaviour. One memcpy is the price of a stable
    /// address; callers on a hot path build their bytes in place with `init(capacity:fill:)`.)
    package convenience init(adopting bytes: [UInt8]) {
        self.init(capacity: bytes.count) { out in
            bytes.withUnsafeBytes { out.copyMemory(from: $0) }
            return bytes.count
        }
    }

    /// Copies an array's bytes.
    package convenience init(_ bytes: [UInt8]) { self.init(adopting: bytes) }

    package convenience init(_ bytes: UnsafeRawBufferPointer) {
        self.init(capacity: bytes.count) { out in
            out.copyMemory(from: bytes)
            return bytes.count
        }
    }

    package convenience init(_ string: String) {
        var string = string
        self.init(capacity: string.utf8.count) { out in
            string.withUTF8 { out.copyMemory(from: UnsafeRawBufferPointer($0)) }
            return string.utf8.count
        }
    }

    deinit {
        free(UnsafeMutableRawPointer(mutating: base))
    }

    @inlinable package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    package var array: [UInt8] { Array(bytes) }
}
