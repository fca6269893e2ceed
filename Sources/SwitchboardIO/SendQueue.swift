/// A connection's queue of byte runs waiting to be written, bounded by `queuedBytes`.
///
/// The first chunk is stored inline: most connections have zero or one response in flight,
/// and an idle connection must cost no allocation.
struct SendQueue {
    struct Chunk {
        let bytes: OutboundBytes
        var offset: Int
        var remaining: Int { bytes.count - offset }
    }

    private(set) var first: Chunk?
    private var rest: [Chunk] = []
    private var restHead = 0
    private(set) var queuedBytes = 0

    var isEmpty: Bool { first == nil }
    var chunkCount: Int { first == nil ? 0 : 1 + rest.count - restHead }

    mutating func append(_ bytes: OutboundBytes) {
        guard bytes.count > 0 else { return }
        queuedBytes += bytes.count
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
        while left > 0, var f = first {
            let r = f.remaining
            if left < r {
                f.offset += left
                first = f
                return
            }
            left -= r
            popFirst()
        }
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
        first = nil
        rest = []
        restHead = 0
        queuedBytes = 0
    }
}
