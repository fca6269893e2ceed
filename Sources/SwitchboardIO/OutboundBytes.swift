/// An immutable, reference-counted run of bytes queued for sending.
///
/// One allocation holds the header and the bytes, whose address never moves, so the kernel can
/// read them while a send is in flight. The same instance may sit in many connections' send
/// queues at once (a fan-out writes one encoded frame to every subscriber); the last queue to
/// finish with it releases it.
public final class OutboundBytes: @unchecked Sendable {
    public let count: Int
    @usableFromInline let base: UnsafeMutableRawPointer

    /// Allocates `count` bytes and lets `fill` write all of them, exactly once, before the
    /// buffer is shared. Returns how many bytes were written (may be fewer than `count`).
    public init(capacity: Int, fill: (UnsafeMutableRawBufferPointer) -> Int) {
        precondition(capacity >= 0)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 16)
        let written = fill(UnsafeMutableRawBufferPointer(start: storage, count: capacity))
        precondition(written >= 0 && written <= capacity)
        base = storage
        count = written
    }

    public convenience init(_ bytes: [UInt8]) {
        self.init(capacity: bytes.count) { out in
            bytes.withUnsafeBytes { out.copyMemory(from: $0) }
            return bytes.count
        }
    }

    public convenience init(_ bytes: UnsafeRawBufferPointer) {
        self.init(capacity: bytes.count) { out in
            out.copyMemory(from: bytes)
            return bytes.count
        }
    }

    public convenience init(_ string: String) {
        var s = string
        self.init(s.withUTF8 { Array($0) })
    }

    deinit { base.deallocate() }

    @inlinable public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public var array: [UInt8] { Array(bytes) }
}
