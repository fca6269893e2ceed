/// A send block: a fixed-size run of bytes that small frames queued for one connection are
/// copied into, one after the other, so that a flush gives the kernel one iovec for all of
/// them. The header (`OutboundBytes.Storage`'s count) is the bytes written so far; it grows as
/// frames are appended and never shrinks while the block is queued.
///
/// A subclass only so that a send queue can tell a block from a shared frame by its type
/// (`SendBlockPool.isBlock`): both sit in the queue's chunks the same way, but a frame is
/// released when sent, a block goes back to its pool. No stored properties of its own.
final class SendBlock: ManagedBuffer<Int, UInt8> {}

/// One shard's pool of send blocks, for small-frame coalescing (issue 16 items 1 and 6).
///
/// Why copy: the kernel's cost of a vectored send grows with its iovecs. Measured on loopback
/// TCP, `writev` of 16 iovecs of 22 bytes took ~1,000-1,130 ns of system time; copying the same
/// 16 frames into one buffer and writing that, ~550 ns. A fan-out queues a frame per
/// subscriber per message, so a subscriber gets ~16 frames per loop turn, and the iovecs were
/// most of what a delivery cost. uWebSockets copies every outgoing message into a "cork"
/// buffer for the same reason. A copy of a few hundred bytes is cheaper than its iovec; a
/// large frame is not, and stays a shared reference (`IOConfiguration.sendCoalesceMaxFrameBytes`).
///
/// Ownership: a block taken from the pool belongs to exactly one send queue (as the +1 of its
/// chunk, `SendQueue`, "Ownership") until the queue is done with it (sent, dropped, or the
/// connection closed), and then comes back through `recycle`. It is never shared, so the queue
/// may append to it; bytes once written are neither moved nor overwritten while the block is
/// queued (an io_uring send in flight reads them).
///
/// Bounds: at most `maxBlocks` blocks exist at once (queued or free): beyond, `take` returns
/// nil, counts `switchboard_send_blocks_exhausted_total`, and the caller queues the frame by
/// reference as before coalescing existed. This also bounds what blocks waste: a block's
/// unwritten tail is not counted in any queue's cost (a queue counts the bytes it holds), and
/// a frame pattern that leaves many half-empty blocks behind runs into this bound.
///
/// Sized by load: a block that comes back is kept free (up to `maxBlocks`, the bound above), so
/// a fan-out to 10,000 subscribers, which takes 10,000 blocks every loop turn, takes them from
/// the free list each turn instead of from malloc. Freeing the blocks beyond a fixed count as
/// they came back (1,024 then) had glibc give the top of the heap back to the kernel and
/// fault it in again on the next turn: page faults, page clearing and memory-cgroup charges,
/// 12% of the server's CPU at 1 -> 10,000 (a `perf` profile), 1.6 µs per socket write. At
/// each tick, the free blocks that stayed free for the whole interval (the fewest free at any
/// time in it) are freed, down to `keptFree`; a tick interval in which no block was taken
/// frees every free one (`tick`): an idle shard, and an idle connection, holds no block.
///
/// Shard thread only (the shard's memory budget holds it; its send queues reach it there).
package final class SendBlockPool {
    /// Bytes of every block (`IOConfiguration.sendBlockBytes`).
    let blockBytes: Int
    /// Frames up to this size are copied into blocks (`sendCoalesceMaxFrameBytes`, at most
    /// `blockBytes`); 0: coalescing is off.
    let maxFrameBytes: Int
    /// Blocks that may exist at once (`maxSendBlocksPerShard`); 0: coalescing is off.
    let maxBlocks: Int
    /// Free blocks a busy tick keeps even when they went unused (`sendBlocksKeptFree`).
    let keptFree: Int
    /// Blocks in existence: in queues plus `freeCount`.
    private(set) var blockCount = 0
    /// The free blocks, each owning its +1, `freeCount` of them used (a stack: the block freed
    /// last, whose bytes are most likely in the cache, is taken first).
    private let free: UnsafeMutablePointer<Unmanaged<OutboundBytes.Storage>>
    private(set) var freeCount = 0
    /// Blocks taken since the last `tick` (0 then frees the free list).
    private var takenSinceTick = 0
    /// The fewest free blocks at any time since the last `tick`: that many sat unused through
    /// the whole interval, and the tick frees them (beyond `keptFree`).
    private(set) var fewestFreeSinceTick = 0
    /// `SendBlock`'s metadata, for `isBlock`: read once here, because reading it per chunk
    /// would go through its metadata accessor (a subclass of a generic class is initialized at
    /// run time).
    private let blockType = ObjectIdentifier(SendBlock.self)
    private let exhausted: Counter
    private let gauge: Counter

    /// - Parameters:
    ///   - exhausted: counts takes refused at `maxBlocks`.
    ///   - gauge: blocks in existence, stored at each `tick`.
    init(blockBytes: Int, maxFrameBytes: Int, maxBlocks: Int, keptFree: Int, exhausted: Counter, gauge: Counter) {
        precondition(blockBytes > 0 && maxFrameBytes >= 0 && maxFrameBytes <= blockBytes && maxBlocks >= 0
                     && keptFree >= 0 && keptFree <= maxBlocks, "send block pool bounds out of range")
        self.blockBytes = blockBytes
        self.maxFrameBytes = maxBlocks > 0 ? maxFrameBytes : 0
        self.maxBlocks = maxBlocks
        self.keptFree = keptFree
        self.exhausted = exhausted
        self.gauge = gauge
        // Room for every block that may exist: a block that comes back always has a place.
        // Pages of it are touched only as blocks come back (8 bytes each).
        free = .allocate(capacity: maxBlocks)
    }

    /// A pool that never gives a block (tests of queues without coalescing).
    static func disabled() -> SendBlockPool {
        SendBlockPool(blockBytes: 1, maxFrameBytes: 0, maxBlocks: 0, keptFree: 0, exhausted: Counter("e", help: ""), gauge: Counter("g", help: ""))
    }

    deinit {
        // Queued blocks came back when their queues were emptied (`Shard.deinit` empties every
        // queue before the budget, which holds this pool, goes).
        assert(blockCount == freeCount, "\(blockCount - freeCount) send blocks still queued when the pool went")
        releaseFree(freeCount)
        free.deallocate()
    }

    /// Whether a queued chunk's bytes are a block of this pool (otherwise a shared frame).
    @inline(__always) func isBlock(_ bytes: Unmanaged<OutboundBytes.Storage>) -> Bool {
        // `type(of:)` of a native Swift object is a load of its isa pointer.
        bytes._withUnsafeGuaranteedRef { ObjectIdentifier(type(of: $0)) } == blockType
    }

    /// An empty block (count 0) whose +1 the caller owns, or nil at `maxBlocks` (counted).
    @inline(__always) func take() -> Unmanaged<OutboundBytes.Storage>? {
        if freeCount > 0 {
            freeCount -= 1
            takenSinceTick &+= 1
            if freeCount < fewestFreeSinceTick { fewestFreeSinceTick = freeCount }
            let block = free[freeCount]
            // Emptied here, not in `recycle`: the caller writes into the block next, so this
            // store goes to a line about to be written anyway.
            block._withUnsafeGuaranteedRef { $0.withUnsafeMutablePointerToHeader { $0.pointee = 0 } }
            return block
        }
        return make()
    }

    private func make() -> Unmanaged<OutboundBytes.Storage>? {
        guard blockCount < maxBlocks else {
            exhausted.increment()
            return nil
        }
        blockCount += 1
        takenSinceTick &+= 1
        assert(freeCount == 0, "a block made while free ones were left")
        fewestFreeSinceTick = 0
        let block = SendBlock.create(minimumCapacity: blockBytes) { _ in 0 }
        return .passRetained(block)
    }

    /// Appends `bytes` after what `block` holds if they fit (false: nothing written). Only
    /// after its count: bytes already written, which a send in flight may be reading, stay.
    @inline(__always) func append(_ bytes: UnsafeRawBufferPointer, to block: Unmanaged<OutboundBytes.Storage>) -> Bool {
        append(count: bytes.count, to: block) { to in
            if let from = bytes.baseAddress { to.copyMemory(from: from, byteCount: bytes.count) }
        }
    }

    /// Lets `fill` write `count` bytes at the end of what `block` holds if they fit (false:
    /// `fill` is not called). For bytes that are copied out of another buffer anyway (a TLS
    /// record layer's ciphertext): they go straight into the block. `fill` writes exactly
    /// `count` bytes at the address it is given, and nothing else.
    @inline(__always) func append(count: Int, to block: Unmanaged<OutboundBytes.Storage>, _ fill: (UnsafeMutableRawPointer) -> Void) -> Bool {
        assert(isBlock(block), "appended to a shared frame")
        assert(count >= 0, "a negative run")
        let blockBytes = self.blockBytes
        return block._withUnsafeGuaranteedRef { b in
            b.withUnsafeMutablePointers { used, elements in
                let before = used.pointee
                guard count <= blockBytes &- before else { return false }
                fill(UnsafeMutableRawPointer(elements + before))
                used.pointee = before &+ count
                return true
            }
        }
    }

    /// Takes back a block a queue is done with (its +1 with it) and keeps it free: `tick`
    /// decides what is freed. The block's memory is not touched (it keeps its count until
    /// `take` empties it): on io_uring a queue gives a block back when its send completes, a
    /// loop turn or more after the kernel read it, and by then it is out of the cache
    /// (issue 16 item 3; the queue knows the chunk is a block without reading it either,
    /// `SendQueue.Chunk.isBlock`).
    @inline(__always) func recycle(_ block: Unmanaged<OutboundBytes.Storage>) {
        assert(isBlock(block), "a frame recycled as a send block")
        assert(blockCount > freeCount, "a send block recycled twice")
        assert(freeCount < maxBlocks, "more free blocks than may exist")
        free[freeCount] = block
        freeCount += 1
    }

    /// On the shard's tick: frees every free block if none was taken since the last tick (an
    /// idle shard returns the memory); otherwise frees those that stayed free through the whole
    /// interval, beyond `keptFree` (a burst's blocks go one tick after the burst). Publishes
    /// the gauge.
    func tick() {
        if takenSinceTick == 0 {
            releaseFree(freeCount)
        } else {
            // Free blocks only shrink by `take`, which lowers the mark with them.
            assert(fewestFreeSinceTick <= freeCount, "the interval's low mark above the free count")
            releaseFree(max(0, min(fewestFreeSinceTick, freeCount - keptFree)))
        }
        takenSinceTick = 0
        fewestFreeSinceTick = freeCount
        assert(blockCount >= freeCount && blockCount <= maxBlocks)
        gauge.set(blockCount)
    }

    /// Frees `count` free blocks from the bottom of the stack: the ones free longest (the
    /// bottom `fewestFreeSinceTick` were not taken all interval); the rest move down.
    private func releaseFree(_ count: Int) {
        assert(count >= 0 && count <= freeCount)
        guard count > 0 else { return }
        for i in 0..<count { free[i].release() }
        // Overlapping ranges: moveInitialize copies in the safe direction.
        free.moveInitialize(from: free + count, count: freeCount - count)
        blockCount -= count
        freeCount -= count
    }
}
