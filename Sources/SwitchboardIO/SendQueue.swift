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
/// (`dropUnstarted`, `removeAll`). A chunk is then a plain value: moving it from `rest` to
/// `first` and clearing `rest` cost no reference counting and no destroy pass. Before, a
/// fan-out delivery paid three to four retain/release pairs for that bookkeeping on top of
/// the queue's own reference. The price of manual ownership: a queue that still holds chunks
/// must be emptied before it is dropped, or its frames leak. The shard does (`beginClose`
/// for a connection, `deinit` for the table); copies of a queue (a `Connection` read by value)
/// own nothing and must not be mutated.
struct SendQueue {
    /// One queued run. Trivial (no reference counting when copied): see "Ownership" above.
    struct Chunk {
        /// +1, taken by `append`, given back when the chunk leaves the queue.
        let bytes: Unmanaged<OutboundBytes>
        var offset: Int

        @inline(__always) var count: Int { bytes._withUnsafeGuaranteedRef { $0.count } }
        @inline(__always) var remaining: Int { count - offset }
        /// The bytes not yet sent. Valid while the chunk is queued (the queue's reference
        /// keeps them alive and they never move).
        @inline(__always) var pending: UnsafeRawBufferPointer {
            bytes._withUnsafeGuaranteedRef {
                let all = $0.bytes
                assert(offset < all.count, "a queued chunk with nothing left to send")
                return UnsafeRawBufferPointer(start: all.baseAddress.unsafelyUnwrapped + offset, count: all.count - offset)
            }
        }
    }

    /// Heap bytes one queued chunk costs beyond its payload, measured with glibc malloc on
    /// x86_64 (`SendQueueCostTests` re-measures it with `mallinfo2` and fails if it is low):
    /// the `OutboundBytes` object (16-byte header + count + base = 32 bytes, a 48-byte malloc
    /// chunk), the payload's own malloc header and rounding (up to 24 bytes; 32 for a 1-byte
    /// payload), and the `Chunk` in `rest` (16 bytes, up to 32 with the array's geometric
    /// growth). Rounded up to cover all three: 112. A frame shared by many queues (fan-out)
    /// is counted in full by each, which over-counts the object and payload: conservative.
    static let entryOverheadBytes = 112

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

    /// What appending a run of `payloadBytes` adds to `costBytes`.
    @inline(__always) static func cost(payloadBytes: Int) -> Int { payloadBytes + entryOverheadBytes }

    mutating func append(_ bytes: OutboundBytes) {
        guard bytes.count > 0 else { return }
        append(retained: .passRetained(bytes))
    }

    /// Appends bytes whose +1 the caller already took for this queue. The queue owns that
    /// reference from here on. Not empty (`append(_:)` filters empty runs).
    @inline(__always) mutating func append(retained bytes: Unmanaged<OutboundBytes>) {
        let chunk = Chunk(bytes: bytes, offset: 0)
        let count = chunk.count
        assert(count > 0, "an empty run in a send queue")
        queuedBytes += count
        charge(Self.cost(payloadBytes: count))
        if first == nil {
            first = chunk
        } else {
            rest.append(chunk)
        }
    }

    /// Visits up to `max` chunks from the front, in order, with their unsent bytes.
    @inline(__always) func forEachPending(max: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard let f = first else { return }
        body(f.pending)
        var i = restHead
        var n = 1
        let end = rest.count
        while i < end && n < max {
            body(rest[i].pending)
            i += 1
            n += 1
        }
    }

    /// Drops `count` sent bytes from the front.
    mutating func consume(_ count: Int) {
        precondition(count <= queuedBytes)
        if count == queuedBytes, let f = first {
            // Everything was sent (the common case: a vectored send took the whole queue):
            // the chunks go in one pass, `rest` is cleared once.
            let chunks = chunkCount
            f.bytes.release()
            for i in restHead..<rest.count { rest[i].bytes.release() }
            first = nil
            if !rest.isEmpty { rest.removeAll(keepingCapacity: rest.capacity <= 64) }
            restHead = 0
            queuedBytes = 0
            sentBytesTotal &+= UInt64(count)
            release(count + chunks * Self.entryOverheadBytes)
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
            f.bytes.release()  // the queue's reference; the frame lives on in other queues
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
        for dropped in (restHead + keepCount)..<rest.count { rest[dropped].bytes.release() }
        rest.removeSubrange((restHead + keepCount)...)
        queuedBytes = kept
        assert(queuedBytes >= keepingBytes)
        release(before - costBytes)
    }

    /// Moves the next chunk of `rest` to `first` (the caller released the old first).
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

    /// Drops everything queued and gives back the queue's references. Also what a queue must
    /// go through before it is dropped (see "Ownership").
    mutating func removeAll() {
        release(costBytes)
        first?.bytes.release()
        if restHead < rest.count {
            for i in restHead..<rest.count { rest[i].bytes.release() }
        }
        first = nil
        rest = []
        restHead = 0
        queuedBytes = 0
    }
}
