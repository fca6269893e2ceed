/// An immutable, reference-counted run of bytes queued for sending.
///
/// The bytes' address never moves while the instance lives, so the kernel can read them while a
/// send is in flight. The same instance may sit in many connections' send queues at once (a
/// fan-out writes one encoded frame to every subscriber); the last queue to finish with it
/// releases it.
public final class OutboundBytes: @unchecked Sendable {
    public let count: Int
    @usableFromInline let base: UnsafeRawPointer
    /// Either the array whose storage `base` points into, or nil when `base` was allocated here.
    private let owner: [UInt8]?

    /// Allocates `capacity` bytes and lets `fill` write them before the buffer is shared.
    /// `fill` returns how many bytes it wrote (at most `capacity`).
    public init(capacity: Int, fill: (UnsafeMutableRawBufferPointer) -> Int) {
        precondition(capacity >= 0)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 16)
        let written = fill(UnsafeMutableRawBufferPointer(start: storage, count: capacity))
        precondition(written >= 0 && written <= capacity)
        base = UnsafeRawPointer(storage)
        count = written
        owner = nil
    }

    /// Takes over an array without copying. The array's contiguous storage is a heap object
    /// that does not move while this instance holds the only (immutable) reference to it.
    public init(adopting bytes: [UInt8]) {
        var array = bytes
        if array.isEmpty { array = [0]; count = 0 } else { count = array.count }
        // Force unique, native contiguous storage before taking its address.
        array.reserveCapacity(array.count)
        base = array.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) }
        owner = array
    }

    public convenience init(_ bytes: [UInt8]) { self.init(adopting: bytes) }

    public convenience init(_ bytes: UnsafeRawBufferPointer) {
        self.init(capacity: bytes.count) { out in
            out.copyMemory(from: bytes)
            return bytes.count
        }
    }

    public convenience init(_ string: String) { self.init(adopting: Array(string.utf8)) }

    deinit {
        if owner == nil { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }

    @inlinable public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public var array: [UInt8] { Array(bytes) }
}
