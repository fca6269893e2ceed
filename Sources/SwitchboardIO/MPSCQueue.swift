import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// Bounded lock-free multi-producer/single-consumer queue (Vyukov's bounded queue
/// with a per-cell sequence number), for threads that are not shards.
///
/// ## Thread rules
/// - ``tryPush(_:)`` may be called from any number of threads concurrently.
/// - Exactly one thread at a time may act as the consumer (``tryPop()``,
///   ``drain(max:_:)``). Handing that role to another thread requires an external
///   happens-before edge (a lock, a join, a thread start).
/// - ``approximateCount`` and ``capacity`` may be read from any thread.
/// - As with ``SPSCRing``, `Element` is not required to be `Sendable`; only push
///   values whose ownership may be handed to the consumer's thread.
///
/// ## Design
/// Every cell carries a sequence number. For position `p` (a free-running counter,
/// masked to find the cell), the cell's sequence is `p` when it is free for the
/// producer that claims `p`, `p + 1` once that producer has written it, and
/// `p + capacity` once the consumer has emptied it for the next lap. Producers
/// claim a position with a CAS on `enqueuePosition`; the single consumer needs no
/// CAS because nobody else advances `dequeuePosition`.
///
/// A cell stores its sequence minus its index (`_acquireSequence(at:)`, `_releaseSequence(_:at:)`), so
/// every initial sequence (cell `i`: `i`) is stored as 0 and the array is fresh zero pages from
/// `mmap`, resident only as cells are used. Storing the sequences themselves meant writing all
/// of them at creation: a shard's 65,536-cell inbox touched 512 KiB of every shard's RSS at
/// start, used or not (issue 16, base RSS).
///
/// ## Progress
/// Pushes are lock-free, not wait-free: a producer's CAS retry loop only repeats
/// when another producer succeeded, so the system always makes progress. A
/// producer descheduled between claiming a cell and publishing it delays the
/// consumer from seeing *later* cells (FIFO is by claim order) until it resumes;
/// ``tryPop()`` reports empty meanwhile rather than waiting.
@usableFromInline package final class MPSCQueue<Element>: @unchecked Sendable {
    // Stored properties are `@usableFromInline` so the hot methods can be
    // `@inlinable` and specialised in the caller's module.
    //
    // Layout of `positions` (one allocation, 2 × 128 bytes, 128-aligned), so the
    // line producers fight over is not the line the consumer writes:
    //   [0]    enqueuePosition (atomic; CAS by producers)
    //   [128]  dequeuePosition (atomic; stored only by the consumer, relaxed — it is
    //          atomic solely so approximateCount can read it from other threads)
    @usableFromInline internal let positions: UnsafeMutableRawPointer
    @usableFromInline internal let enqueuePosition: UnsafeAtomic<Int>
    @usableFromInline internal let dequeuePosition: UnsafeAtomic<Int>

    /// Per-cell sequence numbers, each stored minus its cell's index (see the type's
    /// documentation); `sequenceBytes` of `mmap`ed pages.
    ///
    /// Kept in an array parallel to `slots` rather than interleaved with them:
    /// interleaving a generic `Element` with an atomic would need hand-computed
    /// offsets for a partially initialised struct, and this queue is for
    /// non-shard threads where the extra cache line per operation is acceptable.
    @usableFromInline internal let sequences: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    /// The length of the `sequences` mapping: `capacity` words rounded up to whole pages.
    private let sequenceBytes: Int
    /// A slot is initialised exactly when its cell's sequence is `position + 1`.
    @usableFromInline internal let slots: UnsafeMutablePointer<Element>
    @usableFromInline internal let mask: Int

    /// The number of elements the queue holds when full (a power of two).
    @usableFromInline package let capacity: Int

    /// Creates an empty queue.
    ///
    /// - Parameter capacity: Requested number of cells, rounded up to the next
    ///   power of two. Must be in `2 ... 1 << 30`.
    package init(capacity: Int) {
        let rounded = _switchboardQueueCapacity(capacity)
        self.capacity = rounded
        self.mask = rounded - 1
        self.slots = UnsafeMutablePointer<Element>.allocate(capacity: rounded)
        // Cell i is free for whoever claims position i on the first lap: sequence i, stored
        // as i - i = 0, which is what a fresh anonymous mapping holds, so no page is written
        // (or made resident) here. mmap, not malloc or calloc: glibc's calloc may clear
        // recycled memory with memset, touching every page, and malloc guarantees no zeros.
        let pageBytes = Int(sysconf(Int32(_SC_PAGESIZE)))
        let wordBytes = MemoryLayout<UnsafeAtomic<Int>.Storage>.stride
        assert(MemoryLayout<UnsafeAtomic<Int>.Storage>.size == MemoryLayout<Int>.size, "a stored sequence is one Int word")
        sequenceBytes = (rounded * wordBytes + pageBytes - 1) / pageBytes * pageBytes
        // MAP_FAILED is (void *)-1, a macro Swift does not import.
        guard let mapping = mmap(nil, sequenceBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapping != UnsafeMutableRawPointer(bitPattern: -1) else {
            fatalError("MPSCQueue: mmap of \(sequenceBytes) bytes for \(rounded) cells failed (errno \(errno))")
        }
        // Zero bits are the stored value 0 for the Int inside `Storage`: the words are initialised.
        self.sequences = mapping.bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: rounded)

        let pad = _switchboardCacheLinePad
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 2 * pad, alignment: pad)
        self.positions = raw
        let enqueueStorage = raw.bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: 1)
        enqueueStorage.initialize(to: UnsafeAtomic<Int>.Storage(0))
        self.enqueuePosition = UnsafeAtomic(at: enqueueStorage)
        let dequeueStorage = (raw + pad).bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: 1)
        dequeueStorage.initialize(to: UnsafeAtomic<Int>.Storage(0))
        self.dequeuePosition = UnsafeAtomic(at: dequeueStorage)
    }

    deinit {
        // No producer or consumer can be active once the last reference is gone, so
        // every claimed cell has been published. Walk forward from the consumer's
        // position while cells are full; bounded by capacity regardless.
        var position = dequeuePosition.load(ordering: .acquiring)
        var visited = 0
        while visited < capacity {
            let cell = position & mask
            let sequence = _acquireSequence(at: cell)
            if sequence != position &+ 1 { break }
            (slots + cell).deinitialize(count: 1)
            position &+= 1
            visited += 1
        }
        slots.deallocate()
        // Sequence and position storage hold plain Ints: nothing to deinitialise.
        let unmapped = munmap(UnsafeMutableRawPointer(sequences), sequenceBytes)
        assert(unmapped == 0, "munmap of the sequences failed")
        positions.deallocate()
    }

    /// Appends `element` if there is room.
    ///
    /// **Any thread.** Never blocks; returns `false` when the queue is full (the
    /// caller keeps its own copy of `element` and may retry).
    ///
    /// - Returns: `true` if the element was enqueued.
    @inlinable
    package func tryPush(_ element: Element) -> Bool {
        var position = enqueuePosition.load(ordering: .relaxed)
        var cell: Int
        while true {
            cell = position & mask
            // Acquire pairs with the consumer's release when it emptied this cell,
            // so its move out of the slot happens-before our write into it.
            let sequence = _acquireSequence(at: cell)
            let difference = sequence &- position
            if difference == 0 {
                // Cell is free for `position`; race other producers for it. Relaxed is
                // enough: the CAS only hands out positions, the cell's sequence
                // carries all data ordering.
                let (exchanged, original) = enqueuePosition.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if exchanged { break }
                position = original
            } else if difference < 0 {
                // The cell still holds the element from one lap ago: full.
                return false
            } else {
                // Another producer claimed `position` first; catch up.
                position = enqueuePosition.load(ordering: .relaxed)
            }
        }
        (slots + cell).initialize(to: element)
        // Release publishes the slot to the consumer's acquire of this sequence.
        _releaseSequence(position &+ 1, at: cell)
        return true
    }

    /// Removes and returns the oldest published element, or `nil` if there is none.
    ///
    /// **Single consumer thread only.**
    @inlinable
    package func tryPop() -> Element? {
        // Relaxed: only this thread stores `dequeuePosition`.
        let position = dequeuePosition.load(ordering: .relaxed)
        guard let element = _take(at: position) else { return nil }
        dequeuePosition.store(position &+ 1, ordering: .relaxed)
        return element
    }

    /// Pops up to `max` elements in FIFO order, handing each to `body`.
    ///
    /// **Single consumer thread only.** Unlike ``SPSCRing/drain(max:_:)`` each cell
    /// is released individually (the per-cell sequence is what producers wait on),
    /// but the consumer position is published once per batch. `body` must not call
    /// ``tryPop()`` or `drain` on this queue; it may push to it.
    ///
    /// - Parameters:
    ///   - max: Upper bound on elements taken; must be `>= 0`.
    ///   - body: Receives each element.
    /// - Returns: The number of elements passed to `body`.
    @inlinable @discardableResult
    package func drain(max: Int, _ body: (Element) -> Void) -> Int {
        precondition(max >= 0, "drain max must be non-negative")
        let start = dequeuePosition.load(ordering: .relaxed)
        var taken = 0
        while taken < max, let element = _take(at: start &+ taken) {
            // Advance before calling out: the cell is already released, so a
            // reentrant pop (a contract violation) would at worst see a stale
            // position rather than a double move of the same slot.
            taken += 1
            body(element)
        }
        if taken > 0 {
            dequeuePosition.store(start &+ taken, ordering: .relaxed)
        }
        return taken
    }

    /// Moves the element at `position` out and frees its cell for the next lap, or
    /// returns `nil` if that cell is not yet published. Consumer only.
    @inlinable
    internal func _take(at position: Int) -> Element? {
        let cell = position & mask
        // Acquire pairs with the producer's release of the sequence, making the
        // slot's contents visible.
        let sequence = _acquireSequence(at: cell)
        // With a single consumer the only possible values here are `position` (not
        // yet published, or not yet claimed) and `position + 1` (published).
        if sequence != position &+ 1 { return nil }
        let element = (slots + cell).move()
        // Release: our read of the slot happens-before the producer that claims
        // `position + capacity` writes into it.
        _releaseSequence(position &+ capacity, at: cell)
        return element
    }

    /// Cell `cell`'s sequence (stored minus `cell`, see the type's documentation), loaded with
    /// acquire: every load of a sequence pairs with the release that stored it (each call site
    /// says which).
    @inlinable @inline(__always)
    internal func _acquireSequence(at cell: Int) -> Int {
        UnsafeAtomic<Int>(at: sequences + cell).load(ordering: .acquiring) &+ cell
    }

    /// Sets cell `cell`'s sequence to `sequence` (stored minus `cell`) with release: every
    /// store of a sequence publishes or frees the slot (each call site says which).
    @inlinable @inline(__always)
    internal func _releaseSequence(_ sequence: Int, at cell: Int) {
        UnsafeAtomic<Int>(at: sequences + cell).store(sequence &- cell, ordering: .releasing)
    }

    /// Number of elements currently queued, as seen by a racy snapshot.
    ///
    /// Any thread. Counts cells claimed by producers that may not be published yet,
    /// and may be stale in either direction; always within `0 ... capacity`.
    @inlinable
    package var approximateCount: Int {
        let dequeued = dequeuePosition.load(ordering: .relaxed)
        let enqueued = enqueuePosition.load(ordering: .relaxed)
        return Swift.min(Swift.max(enqueued &- dequeued, 0), capacity)
    }
}
