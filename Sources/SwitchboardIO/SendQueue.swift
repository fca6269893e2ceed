/// A connection's queue of byte runs waiting to be written, bounded by what it really costs.
///
/// The first chunk is stored inline: most connections have zero or one response in flight,
/// and an idle connection must cost no allocation.
///
/// `costBytes` is what the limits count: the unsent payload bytes plus
/// ``entryOverheadBytes`` per queued chunk. Payload bytes alone let a peer that never reads
/// queue millions of 2-byte pongs "within" a 4 MiB limit while each cost ~100 bytes of heap.
///
/// Ownership (issue 16 item 1): a chunk holds its bytes by an `Unmanaged` reference, retained
/// once by `append` and released once when the chunk is sent (`consume`) or dropped
/// (`dropUnstarted`, `removeAll`). A chunk is then a plain value: moving it from the ring to
/// `first` and emptying the ring cost no reference counting and no destroy pass. Before, a
/// fan-out delivery paid three to four retain/release pairs for that bookkeeping on top of
/// the queue's own reference. The price of manual ownership: a queue must go through
/// `removeAll` before it is dropped, or its frames (and its ring) leak. The shard does
/// (`beginClose` for a connection, `deinit` for the table); copies of a queue (a `Connection`
/// read by value) own nothing and must not be mutated.
///
/// Send blocks (issue 16 items 1 and 6): a chunk holds either a frame (shared with other
/// queues, released when the queue is done with it) or a send block of the shard's pool
/// (`SendBlockPool`: this queue's alone, small frames copied into it by `appendCoalescing`,
/// given back to the pool when the queue is done with it). Both are `OutboundBytes.Storage`,
/// so sending and consuming treat them alike: a block's count grows as frames are appended
/// behind what was already written, which stays where it is, so a send in flight that reads
/// the front of a block is unaffected by appends. A block in a chunk costs like any chunk:
/// the bytes written into it plus `entryOverheadBytes`.
struct SendQueue {
    /// One queued run. Trivial (no reference counting when copied): see "Ownership" above.
    struct Chunk {
        /// +1, taken by `append`, given back when the chunk leaves the queue.
        let bytes: Unmanaged<OutboundBytes.Storage>
        /// `offset`, and in `blockBit` whether `bytes` is a send block of the shard's pool (see
        /// `isBlock`). One word: a chunk stays 16 bytes in the ring.
        private var offsetAndKind: Int

        /// Set in `offsetAndKind` for a send block. An offset is below a chunk's count, far
        /// below 2^62.
        private static let blockBit = 1 << 62

        /// `isBlock`: given by whoever queues the bytes (`SendQueue.append(retained:isBlock:)`).
        @inline(__always) init(bytes: Unmanaged<OutboundBytes.Storage>, isBlock: Bool) {
            self.bytes = bytes
            offsetAndKind = isBlock ? Self.blockBit : 0
        }

        /// Bytes of the chunk already written.
        @inline(__always) var offset: Int {
            get { offsetAndKind & ~Self.blockBit }
            set {
                assert(newValue >= 0 && newValue < Self.blockBit, "a chunk offset out of range")
                offsetAndKind = newValue | (offsetAndKind & Self.blockBit)
            }
        }

        /// Whether `bytes` is a send block (given back to the pool when sent) rather than a
        /// frame (released). Kept here so that the queue learns it without loading the bytes'
        /// object header (issue 16 item 3): at a send's completion on io_uring that object is
        /// out of the cache, and at 1,000 connections perf put ~15% of the server's user
        /// samples on that one load (`RESULTS.md`, 2026-12-03).
        @inline(__always) var isBlock: Bool { offsetAndKind & Self.blockBit != 0 }

        @inline(__always) var count: Int { bytes._withUnsafeGuaranteedRef { OutboundBytes.bytes(of: $0).count } }
        @inline(__always) var remaining: Int { count - offset }
        /// The bytes not yet sent. Valid while the chunk is queued (the queue's reference
        /// keeps them alive and they never move).
        @inline(__always) var pending: UnsafeRawBufferPointer {
            bytes._withUnsafeGuaranteedRef {
                let all = OutboundBytes.bytes(of: $0)
                assert(offset < all.count, "a queued chunk with nothing left to send")
                return UnsafeRawBufferPointer(start: all.baseAddress.unsafelyUnwrapped + offset, count: all.count - offset)
            }
        }
    }

    /// Heap bytes one queued chunk costs beyond its payload, measured with glibc malloc on
    /// x86_64 (`SendQueueCostTests` re-measures it with `mallinfo2` and fails if it is low):
    /// the `OutboundBytes` block (one malloc: 16-byte object header + 8-byte count before the
    /// payload, plus malloc's 8-byte header and rounding to 16: up to 47 bytes) and the `Chunk`
    /// in the ring (16 bytes, up to 32 with the ring's doubling). Rounded up: 80. A frame
    /// shared by many queues (fan-out) is counted in full by each, which over-counts the
    /// block: conservative.
    static let entryOverheadBytes = 80

    /// The shard's budget is not stored here but passed to every call that changes the cost
    /// (`budget:`): every queue of a shard has the same one, and the 8 bytes it took in each
    /// connection's slot hold the connection's idle deadline instead (`Connection`, issue 16
    /// item 3). The shard owns both the budget and every queue, so the reference passed is
    /// alive for the call.
    init() {}

    /// Gives back a chunk's bytes the queue is done with: a send block to the pool, a frame's
    /// reference to the frame.
    /// The chunk's kind is its own (`Chunk.isBlock`): a block goes back without a touch of its
    /// memory (`SendBlockPool.recycle`).
    @inline(__always) private func dispose(_ chunk: Chunk, _ budget: ShardMemoryBudget) {
        if chunk.isBlock {
            budget.blocks.recycle(chunk.bytes)
        } else {
            chunk.bytes.release()
        }
    }

    private(set) var first: Chunk?
    /// The chunks behind `first`, oldest first: a ring of `Chunk`s behind a `RingHeader`, one
    /// allocation, made when a second chunk is queued (an idle connection and one with a
    /// single response in flight have none). Manual, like the chunks' references: no
    /// uniqueness check per append (an array's), no destroy pass when it empties. Kept when
    /// it empties up to `keptRingCapacity` chunks (a subscriber that gets a few frames per
    /// turn reuses it), freed beyond, and always by `removeAll`.
    private var ring: UnsafeMutableRawPointer?
    /// Unsent payload bytes.
    private(set) var queuedBytes = 0
    /// Payload bytes sent since the queue was made (for "has this byte left yet?" marks).
    private(set) var sentBytesTotal: UInt64 = 0
    /// Chunks in `ring`. Declared last: a connection packs its state and flags into the four
    /// bytes after it (issue 16 item 2). A queue holds far fewer than 2^32 chunks (its cost
    /// limit counts `entryOverheadBytes` per chunk).
    private var ringCountStorage: UInt32 = 0

    /// The ring's capacity (a power of two) and where its oldest chunk is.
    private struct RingHeader {
        var capacity: Int
        var head: Int
    }

    /// A ring this large or smaller stays allocated when it empties.
    static let keptRingCapacity = 64
    private static let ringChunksOffset = MemoryLayout<RingHeader>.stride

    @inline(__always) private var ringCount: Int { Int(ringCountStorage) }

    @inline(__always) private static func header(_ ring: UnsafeMutableRawPointer) -> UnsafeMutablePointer<RingHeader> {
        ring.assumingMemoryBound(to: RingHeader.self)
    }

    @inline(__always) private static func chunks(_ ring: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Chunk> {
        (ring + ringChunksOffset).assumingMemoryBound(to: Chunk.self)
    }

    /// The `index`th chunk behind `first` (0: the next one).
    @inline(__always) private func ringChunk(_ index: Int) -> Chunk {
        let r = ring.unsafelyUnwrapped
        assert(index < ringCount)
        let h = Self.header(r)
        return Self.chunks(r)[(h.pointee.head + index) & (h.pointee.capacity - 1)]
    }

    var isEmpty: Bool { first == nil }

    /// Counts `count` bytes of this connection written without passing through the queue (a
    /// read's cork, `ReplyCork`), so `sentBytesTotal` still counts every byte written.
    @inline(__always) mutating func countSentPastQueue(_ count: Int) {
        assert(count >= 0 && first == nil, "bytes past a queue that holds others")
        sentBytesTotal &+= UInt64(count)
    }

    var chunkCount: Int { first == nil ? 0 : 1 + ringCount }
    /// What the queue costs: unsent payload plus the per-chunk overhead.
    var costBytes: Int { queuedBytes + chunkCount * Self.entryOverheadBytes }

    /// What appending a run of `payloadBytes` adds to `costBytes`.
    @inline(__always) static func cost(payloadBytes: Int) -> Int { payloadBytes + entryOverheadBytes }

    mutating func append(_ bytes: OutboundBytes, budget: ShardMemoryBudget) {
        guard bytes.count > 0 else { return }
        append(retained: .passRetained(bytes.storage), isBlock: false, budget: budget)
    }

    /// Appends bytes whose +1 the caller already took for this queue. The queue owns that
    /// reference from here on. Not empty (`append(_:)` filters empty runs).
    ///
    /// `isBlock`: whether `bytes` is a send block of the shard's pool (`Chunk.isBlock`), which
    /// the caller knows. Given, not read from the bytes' type: a block taken from the pool is
    /// cold (it was last written a turn or more ago), and the caller has only stored into it;
    /// a load of its header here waited for the line (perf: ~15% of the server's user samples
    /// at 1,000 × 20 B echo on io_uring), which the stores alone leave to the store buffer.
    @inline(__always) mutating func append(retained bytes: Unmanaged<OutboundBytes.Storage>, isBlock: Bool, budget: ShardMemoryBudget) {
        assert(isBlock == budget.blocks.isBlock(bytes), "a chunk's kind given wrong")
        let chunk = Chunk(bytes: bytes, isBlock: isBlock)
        let count = chunk.count
        assert(count > 0, "an empty run in a send queue")
        queuedBytes += count
        budget.charge(Self.cost(payloadBytes: count))
        if first == nil {
            assert(ringCount == 0, "chunks behind an empty front")
            first = chunk
        } else {
            ringPush(chunk)
        }
    }

    /// Copies a small run into the queue's last send block, or into a new block from the pool,
    /// instead of holding a reference to it: a flush then gives the kernel one iovec for a run
    /// of small frames (see `SendBlockPool`). Returns false, having queued nothing, when the
    /// queue is empty (a lone frame is one iovec either way, and a reference is cheaper to
    /// queue than a copy: an echo's reply stays as it was) or the pool has no block to give;
    /// the caller then appends the bytes by reference. The caller checked the size
    /// (`SendBlockPool.maxFrameBytes`) and the limits.
    ///
    /// `inFlightBytes`: the queue's front bytes handed to the kernel by a send that has not
    /// completed (io_uring; 0 with epoll, whose writes are synchronous). Only a block none of
    /// whose bytes are started (written, or in flight) takes more frames, and only a lone small
    /// frame nothing of which is started moves into a new block (with the new frame: the queue
    /// is then one iovec, and on io_uring one plain send). So no byte the kernel may be reading
    /// is ever written or moved, and a started block holds only frames queued before it
    /// started: `dropUnstarted` keeps it whole (the peer never sees half a frame) and drops
    /// every frame queued after.
    ///
    /// `pool`: the shard's (`budget.blocks`), passed by the caller, which holds it anyway: no
    /// load through the budget on this path.
    @inline(__always)
    mutating func appendCoalescing(_ bytes: UnsafeRawBufferPointer, inFlightBytes: Int, pool: SendBlockPool, budget: ShardMemoryBudget) -> Bool {
        let n = bytes.count
        guard n > 0, let front = first else { return false }
        assert(pool === budget.blocks, "another shard's send blocks")
        assert(n <= pool.maxFrameBytes, "a frame too large to copy into a send block")
        let last = ringCount == 0 ? front : ringChunk(ringCount - 1)
        // Nothing of `last` is started: not partly written, and the bytes queued before it
        // cover the whole in-flight range (the queue has only grown at its back since the submit).
        let unstarted = last.offset == 0 && queuedBytes &- last.remaining >= inFlightBytes
        if last.isBlock {
            if unstarted && pool.append(bytes, to: last.bytes) { return grew(by: n, budget) }
        } else if unstarted && ringCount == 0 && front.count <= pool.maxFrameBytes && front.count &+ n <= pool.blockBytes {
            // The lone frame and the new one, together in a new block: same chunk count,
            // `n` more bytes.
            guard let block = pool.take() else { return false }
            let copied = pool.append(front.pending, to: block) && pool.append(bytes, to: block)
            assert(copied, "two frames that fit did not")
            first = Chunk(bytes: block, isBlock: true)
            front.bytes.release()  // a frame (not a block, checked above)
            return grew(by: n, budget)
        }
        guard let block = pool.take() else { return false }
        let copied = pool.append(bytes, to: block)
        assert(copied, "a frame of at most maxFrameBytes did not fit an empty block")
        append(retained: block, isBlock: true, budget: budget)  // a new chunk: `n` plus its overhead
        return true
    }

    /// Queues a run of `count` bytes that `fill` writes straight into a send block: the queue's
    /// last block if nothing of it is started and the run fits (as `appendCoalescing`), else a
    /// new block of the pool, queued behind whatever is queued, an empty queue included. For
    /// bytes that are copied out of another buffer anyway (a TLS connection's ciphertext, out of
    /// its record layer's): a block costs no malloc and no free, where a buffer of their own
    /// cost both per flush, and a run of flushes leaves in one iovec. false, having queued
    /// nothing and not called `fill`, when the pool has no block to give: the caller queues the
    /// bytes another way. The caller checked the limits and that `count` is at most the pool's
    /// `blockBytes`.
    ///
    /// `inFlightBytes`: as for `appendCoalescing`.
    @inline(__always)
    mutating func appendInBlock(count n: Int, inFlightBytes: Int, pool: SendBlockPool, budget: ShardMemoryBudget,
                                _ fill: (UnsafeMutableRawPointer) -> Void) -> Bool {
        assert(n > 0 && n <= pool.blockBytes, "a run that does not fit a send block")
        assert(pool === budget.blocks, "another shard's send blocks")
        if let front = first {
            let last = ringCount == 0 ? front : ringChunk(ringCount - 1)
            let unstarted = last.offset == 0 && queuedBytes &- last.remaining >= inFlightBytes
            if last.isBlock && unstarted && pool.append(count: n, to: last.bytes, fill) { return grew(by: n, budget) }
        }
        guard let block = pool.take() else { return false }
        let written = pool.append(count: n, to: block, fill)
        assert(written, "a run of at most blockBytes did not fit an empty block")
        append(retained: block, isBlock: true, budget: budget)  // a new chunk: `n` plus its overhead
        return true
    }

    /// Counts `n` bytes appended to a chunk already queued (no new chunk, no overhead).
    @inline(__always) private mutating func grew(by n: Int, _ budget: ShardMemoryBudget) -> Bool {
        queuedBytes += n
        budget.charge(n)
        return true
    }

    @inline(__always) private mutating func ringPush(_ chunk: Chunk) {
        let count = ringCount
        if let r = ring {
            let h = Self.header(r)
            let capacity = h.pointee.capacity
            if count < capacity {
                (Self.chunks(r) + ((h.pointee.head + count) & (capacity - 1))).initialize(to: chunk)
                ringCountStorage += 1
                return
            }
        }
        growRing()
        let r = ring.unsafelyUnwrapped
        assert(Self.header(r).pointee.head == 0 && count < Self.header(r).pointee.capacity)
        (Self.chunks(r) + count).initialize(to: chunk)
        ringCountStorage += 1
    }

    /// Doubles the ring (4 chunks at first), its chunks moved to the front in order.
    private mutating func growRing() {
        let count = ringCount
        let old = ring
        let capacity = max(4, (old.map { Self.header($0).pointee.capacity } ?? 0) * 2)
        let made = UnsafeMutableRawPointer.allocate(byteCount: Self.ringChunksOffset + capacity * MemoryLayout<Chunk>.stride,
                                                    alignment: max(MemoryLayout<RingHeader>.alignment, MemoryLayout<Chunk>.alignment))
        made.bindMemory(to: RingHeader.self, capacity: 1).initialize(to: RingHeader(capacity: capacity, head: 0))
        let slots = (made + Self.ringChunksOffset).bindMemory(to: Chunk.self, capacity: capacity)
        if let old {
            let h = Self.header(old).pointee
            let from = Self.chunks(old)
            for i in 0..<count { (slots + i).initialize(to: from[(h.head + i) & (h.capacity - 1)]) }
            old.deallocate()
        }
        ring = made
    }

    /// Frees the ring if it is empty and large (or always, `force`).
    private mutating func releaseRingIfEmpty(force: Bool) {
        guard let r = ring, ringCount == 0 else { return }
        if force || Self.header(r).pointee.capacity > Self.keptRingCapacity {
            r.deallocate()
            ring = nil
        } else {
            Self.header(r).pointee.head = 0
        }
    }

    /// The unsent bytes of the queue's only chunk; nil when it holds none or several.
    @inline(__always) var soleRun: UnsafeRawBufferPointer? {
        guard ringCountStorage == 0, let f = first else { return nil }
        return f.pending
    }

    /// Visits up to `max` chunks from the front, in order, with their unsent bytes.
    @inline(__always) func forEachPending(max: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard let f = first else { return }
        body(f.pending)
        let n = Swift.min(ringCount, max - 1)
        guard n > 0 else { return }
        let r = ring.unsafelyUnwrapped
        let h = Self.header(r).pointee
        let slots = Self.chunks(r)
        for i in 0..<n { body(slots[(h.head + i) & (h.capacity - 1)].pending) }
    }

    /// Visits every chunk from the front, in order (tests: each chunk's recorded kind).
    func forEachChunk(_ body: (Chunk) -> Void) {
        guard let f = first else { return }
        body(f)
        for i in 0..<ringCount { body(ringChunk(i)) }
    }

    /// Drops `count` sent bytes from the front.
    ///
    /// The most common send, one chunk written whole (an echo's reply, a subscriber's run of
    /// coalesced frames), is inline at the caller (issue 16 item 3: the call and its frame were
    /// ~15 of its ~50 instructions); the rest is `consumeSome`.
    @inline(__always) mutating func consume(_ count: Int, budget: ShardMemoryBudget) {
        if ringCountStorage == 0, count == queuedBytes, let f = first {
            // An empty ring is either none or a kept one already rewound (`releaseRingIfEmpty`
            // runs wherever the ring empties), so there is nothing to do for it here.
            assert(ring.map { Self.header($0).pointee.head == 0 && Self.header($0).pointee.capacity <= Self.keptRingCapacity } ?? true,
                   "an empty ring not rewound or not released")
            dispose(f, budget)
            first = nil
            queuedBytes = 0
            sentBytesTotal &+= UInt64(count)
            budget.release(count + Self.entryOverheadBytes)
            return
        }
        consumeSome(count, budget)
    }

    /// `consume` for the other cases: several chunks, or a partial write.
    private mutating func consumeSome(_ count: Int, _ budget: ShardMemoryBudget) {
        precondition(count <= queuedBytes)
        if count == queuedBytes, let f = first {
            // Everything was sent (the common case: a vectored send took the whole queue):
            // the chunks go in one pass.
            let chunks = chunkCount
            dispose(f, budget)
            for i in 0..<ringCount { dispose(ringChunk(i), budget) }
            first = nil
            ringCountStorage = 0
            releaseRingIfEmpty(force: false)
            queuedBytes = 0
            sentBytesTotal &+= UInt64(count)
            budget.release(count + chunks * Self.entryOverheadBytes)
            return
        }
        var left = count
        queuedBytes -= count
        sentBytesTotal &+= UInt64(count)
        var popped = 0
        while left > 0, let f = first {
            let r = f.remaining
            if left < r {
                first!.offset += left
                break
            }
            left -= r
            dispose(f, budget)  // the queue's reference (a frame lives on in other queues), or its block
            popFirst()
            popped += 1
        }
        budget.release(count + popped * Self.entryOverheadBytes)
    }

    /// Drops every chunk that is not (partly) written or handed to the kernel: the front
    /// `keepingBytes` unsent bytes stay (an in-flight send's range), and so does a chunk already
    /// partly sent, so the peer never sees a frame cut in the middle. For a close that must
    /// overtake what a peer that stopped reading left queued.
    mutating func dropUnstarted(keepingBytes: Int, budget: ShardMemoryBudget) {
        guard let f = first else { return }
        precondition(keepingBytes <= queuedBytes)
        let before = costBytes
        var kept = f.remaining
        var keepCount = 0  // chunks of the ring kept
        // The first chunk always stays (it is in flight or partly sent, or it is simply next:
        // keeping one more frame costs nothing against a peer that does not read).
        while keepCount < ringCount && kept < keepingBytes {
            kept += ringChunk(keepCount).remaining
            keepCount += 1
        }
        for i in keepCount..<ringCount { dispose(ringChunk(i), budget) }
        ringCountStorage = UInt32(truncatingIfNeeded: keepCount)
        releaseRingIfEmpty(force: false)
        queuedBytes = kept
        assert(queuedBytes >= keepingBytes)
        budget.release(before - costBytes)
    }

    /// Moves the next chunk of the ring to `first` (the caller released the old first).
    private mutating func popFirst() {
        guard ringCount > 0 else {
            first = nil
            return
        }
        let r = ring.unsafelyUnwrapped
        let h = Self.header(r)
        first = Self.chunks(r)[h.pointee.head]
        h.pointee.head = (h.pointee.head + 1) & (h.pointee.capacity - 1)
        ringCountStorage -= 1
        releaseRingIfEmpty(force: false)
    }

    /// Drops everything queued, gives back the queue's references and frees the ring. Also
    /// what a queue must go through before it is dropped (see "Ownership").
    mutating func removeAll(budget: ShardMemoryBudget) {
        budget.release(costBytes)
        if let f = first { dispose(f, budget) }
        for i in 0..<ringCount { dispose(ringChunk(i), budget) }
        first = nil
        ringCountStorage = 0
        releaseRingIfEmpty(force: true)
        queuedBytes = 0
    }
}
