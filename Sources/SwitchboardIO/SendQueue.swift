/// A connection's queue of byte runs waiting to be written, bounded by what it really costs.
///
/// The first chunk is stored inline: most connections have zero or one response in flight,
/// and an idle connection must cost no allocation.
///
/// `costBytes` is what the limits count: the unsent payload bytes plus
/// ``entryOverheadBytes`` per queued chunk. Payload bytes alone let a peer that never reads
/// queue millions of 2-byte pongs "within" a 4 MiB limit while each cost ~100 bytes of heap.
struct SendQueue {
    struct Chunk {
        let bytes: OutboundBytes
        var offset: Int
        var remaining: Int { bytes.count - offset }
    }

    /// Heap bytes one queued chunk costs beyond its payload, measured with glibc malloc on
    /// x86_64 (`SendQueueCostTests` re-measures it with `mallinfo2` and fails if it is low):
    /// the `OutboundBytes` block (one malloc: 16-byte object header + 8-byte count before the
    /// payload, plus malloc's 8-byte header and rounding to 16: up to 47 bytes) and the `Chunk`
    /// in `rest` (16 bytes, up to 32 with the array's geometric growth). Rounded up: 80. A
    /// frame shared by many queues (fan-out) is counted in full by each, which over-counts the
    /// block: conservative.
    static let entryOverheadBytes = 80

    /// The shard's budget, charged with `costBytes` as it changes. Unmanaged: the shard owns
    /// both the budget and every queue, and each charge (once per queued frame: per subscriber
    /// in a fan-out) then costs no retain and release.
    private let budgetReference: Unmanaged<ShardMemoryBudget>

    init(budget: ShardMemoryBudget) { budgetReference = .passUnretained(budget) }

    @inline(__always) private func charge(_ bytes: Int) {
        budgetReference._withUnsafeGuaranteedRef { $0.charge(bytes) }
    }

    @inline(__always) private func release(_ bytes: Int) {
        budgetReference._withUnsafeGuaranteedRef { $0.release(bytes) }
    }

    private(set) var first: Chunk?
    private var rest: [Chunk] = []
    /// Unsent payload bytes.
    private(set) var queuedBytes = 0
    /// Payload bytes sent since the queue was made (for "has this byte left yet?" marks).
    private(set) var sentBytesTotal: UInt64 = 0
    /// `restHead`'s storage, declared last: a connection packs its state and flags into the
    /// four bytes after it (issue 16 item 2). `rest` is compacted long before 2^31 entries.
    private var restHeadIndex: Int32 = 0
    /// Entries of `rest` already moved to `first`.
    private var restHead: Int {
        get { Int(restHeadIndex) }
        set {
            assert(newValue >= 0 && newValue <= Int(Int32.max))
            restHeadIndex = Int32(truncatingIfNeeded: newValue)
        }
    }

    var isEmpty: Bool { first == nil }
    var chunkCount: Int { first == nil ? 0 : 1 + rest.count - restHead }
    /// What the queue costs: unsent payload plus the per-chunk overhead.
    var costBytes: Int { queuedBytes + chunkCount * Self.entryOverheadBytes }

    /// What appending `bytes` adds to `costBytes`.
    @inline(__always) static func cost(of bytes: OutboundBytes) -> Int { bytes.count + entryOverheadBytes }

    mutating func append(_ bytes: OutboundBytes) {
        guard bytes.count > 0 else { return }
        queuedBytes += bytes.count
        charge(Self.cost(of: bytes))
        if first == nil {
            first = Chunk(bytes: bytes, offset: 0)
        } else {
            rest.append(Chunk(bytes: bytes, offset: 0))
        }
    }

    /// Visits up to `max` chunks from the front, in order, with their unsent bytes.
    func forEachPending(max: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard let f = first else { return }
        body(UnsafeRawBufferPointer(rebasing: f.bytes.bytes[f.offset...]))
        var i = restHead
        var n = 1
        while i < rest.count && n < max {
            let c = rest[i]
            body(UnsafeRawBufferPointer(rebasing: c.bytes.bytes[c.offset...]))
            i += 1
            n += 1
        }
    }

    /// Drops `count` sent bytes from the front.
    mutating func consume(_ count: Int) {
        precondition(count <= queuedBytes)
        var left = count
        queuedBytes -= count
        sentBytesTotal &+= UInt64(count)
        var popped = 0
        while left > 0, var f = first {
            let r = f.remaining
            if left < r {
                f.offset += left
                first = f
                break
            }
            left -= r
            popFirst()
            popped += 1
        }
        release(count + popped * Self.entryOverheadBytes)
    }

    /// Drops every chunk that is not (partly) written or handed to the kernel: the front
    /// `keepingBytes` unsent bytes stay (an in-flight send's range), and so does a chunk already
    /// partly sent, so the peer never sees a frame cut in the middle. For a close that must
    /// overtake what a peer that stopped reading left queued.
    mutating func dropUnstarted(keepingBytes: Int) {
        guard let f = first else { return }
        precondition(keepingBytes <= queuedBytes)
        let before = costBytes
        var kept = f.remaining
        var keepCount = 0  // chunks of `rest` kept
        var i = restHead
        // The first chunk always stays (it is in flight or partly sent, or it is simply next:
        // keeping one more frame costs nothing against a peer that does not read).
        while i < rest.count && kept < keepingBytes {
            kept += rest[i].remaining
            keepCount += 1
            i += 1
        }
        rest.removeSubrange((restHead + keepCount)...)
        queuedBytes = kept
        assert(queuedBytes >= keepingBytes)
        release(before - costBytes)
    }

    private mutating func popFirst() {
        if restHead < rest.count {
            first = rest[restHead]
            restHead += 1
            if restHead == rest.count {
                rest.removeAll(keepingCapacity: rest.capacity <= 64)
                restHead = 0
            } else if restHead >= 64 && restHead * 2 >= rest.count {
                rest.removeFirst(restHead)
                restHead = 0
            }
        } else {
            first = nil
        }
    }

    mutating func removeAll() {
        release(costBytes)
        first = nil
        rest = []
        restHead = 0
        queuedBytes = 0
    }
}
