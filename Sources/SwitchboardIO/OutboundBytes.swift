/// An immutable, reference-counted run of bytes queued for sending.
///
/// The bytes' address never moves while any copy of the value lives, so the kernel can read
/// them while a send is in flight. The same bytes may sit in many connections' send queues at
/// once (a fan-out writes one encoded frame to every subscriber); the last queue to finish with
/// them releases them.
///
/// One allocation (issue 16 item 3): the bytes are tail-allocated in a `ManagedBuffer` whose
/// header is their count, so a queued frame costs one malloc and one free, where an object
/// holding a pointer to its own malloc'ed bytes cost two of each. The buffer never resizes.
/// A struct around that one reference (8 bytes, copied with one retain, as the class it
/// replaces): `ManagedBuffer` cannot be subclassed into a `Sendable` class.
///
/// `@unchecked Sendable` only because `ManagedBuffer` is not: the bytes are written once,
/// before `init` returns, and never again, so any thread may read them.
@usableFromInline package struct OutboundBytes: @unchecked Sendable {
    /// The count (header) and the bytes (elements), in one heap block.
    @usableFromInline let storage: ManagedBuffer<Int, UInt8>

    /// Allocates `capacity` bytes and lets `fill` write them before the buffer is shared.
    /// `fill` returns how many bytes it wrote (at most `capacity`). The way to build bytes
    /// without an intermediate array (one allocation, bytes written in place).
    @inlinable
    package init(capacity: Int, fill: (UnsafeMutableRawBufferPointer) -> Int) {
        precondition(capacity >= 0)
        // One swift_allocObject (malloc: the object's alignment is 8) for the object header,
        // the count and the bytes.
        storage = ManagedBuffer<Int, UInt8>.create(minimumCapacity: capacity) { buffer in
            let written = buffer.withUnsafeMutablePointerToElements {
                fill(UnsafeMutableRawBufferPointer(start: $0, count: capacity))
            }
            precondition(written >= 0 && written <= capacity)
            return written
        }
    }

    /// Copies an array's bytes. (It used to keep the array and the address `withUnsafeBytes`
    /// gave, past that closure: undefined behaviour. One memcpy is the price of a stable
    /// address; callers on a hot path build their bytes in place with `init(capacity:fill:)`.)
    @inlinable
    package init(adopting bytes: [UInt8]) {
        self.init(capacity: bytes.count) { out in
            bytes.withUnsafeBytes { out.copyMemory(from: $0) }
            return bytes.count
        }
    }

    /// Copies an array's bytes.
    @inlinable
    package init(_ bytes: [UInt8]) { self.init(adopting: bytes) }

    @inlinable
    package init(_ bytes: UnsafeRawBufferPointer) {
        self.init(capacity: bytes.count) { out in
            out.copyMemory(from: bytes)
            return bytes.count
        }
    }

    package init(_ string: String) {
        var string = string
        let count = string.utf8.count
        self.init(capacity: count) { out in
            string.withUTF8 { out.copyMemory(from: UnsafeRawBufferPointer($0)) }
            return count
        }
    }

    // Header and elements are read through their pointers: `ManagedBuffer.header` is a class
    // stored property, which would cost a dynamic exclusivity check per read.

    /// The number of bytes.
    @inlinable package var count: Int { storage.withUnsafeMutablePointerToHeader { $0.pointee } }

    /// Where the bytes start, valid as long as a copy of this value lives (they are part of
    /// its heap block).
    @inlinable package var base: UnsafeRawPointer {
        UnsafeRawPointer(storage.withUnsafeMutablePointerToElements { $0 })
    }

    /// The heap block itself, for holders that count their references to it by hand (a send
    /// queue's chunks, a fan-out's `SharedFrame`: `Unmanaged<Storage>`), and the way back.
    @usableFromInline package typealias Storage = ManagedBuffer<Int, UInt8>

    @inlinable package init(storage: Storage) { self.storage = storage }

    /// A +1 reference to the heap block, for `Shard.send(_:retained:)` (the queue takes it
    /// over); this value keeps its own.
    @inlinable package func retainedStorage() -> Unmanaged<Storage> { .passRetained(storage) }

    /// A block's bytes, read without copying the reference (valid while the caller holds one).
    @inlinable package static func bytes(of storage: Storage) -> UnsafeRawBufferPointer {
        let count = storage.withUnsafeMutablePointerToHeader { $0.pointee }
        return UnsafeRawBufferPointer(start: storage.withUnsafeMutablePointerToElements { $0 }, count: count)
    }

    /// The bytes, valid as long as a copy of this value lives.
    @inlinable package var bytes: UnsafeRawBufferPointer { Self.bytes(of: storage) }

    package var array: [UInt8] { Array(bytes) }
}
