/// The bytes one shard holds on behalf of its peers, against one shard-wide limit: send
/// queues (payload plus per-chunk overhead, see `SendQueue.entryOverheadBytes`), and whatever
/// the protocol layer charges (WebSocket messages being assembled, compression state).
///
/// Per-connection limits bound one peer; this bounds them all together, so that many peers
/// each just under their own limit cannot take the process's memory. Policy when the budget
/// is reached: a send to a connection holding more than its fair share (limit / open
/// connections) is refused like a full queue (the protocol's slow-consumer policy applies),
/// and protocol charges that do not fit are refused (a WebSocket fails the message with 1013).
/// Connections under their fair share keep being served, so one hog cannot starve the rest.
///
/// Shard thread only: plain integers, no atomics beyond the metric stores.
public final class ShardMemoryBudget {
    /// The limit (`IOConfiguration.maxBufferedBytesPerShard`).
    public let limitBytes: Int
    /// Bytes charged now.
    public private(set) var usedBytes = 0
    private let gauge: Counter
    private let hits: Counter

    init(limitBytes: Int, gauge: Counter, hits: Counter) {
        precondition(limitBytes > 0)
        self.limitBytes = limitBytes
        self.gauge = gauge
        self.hits = hits
    }

    /// Whether `bytes` more fit under the limit.
    @inline(__always) public func fits(_ bytes: Int) -> Bool { bytes <= limitBytes - usedBytes }

    /// A connection's fair share of the budget when `connections` are open.
    @inline(__always) public func fairShareBytes(connections: Int) -> Int { limitBytes / max(1, connections) }

    /// Charges `bytes` if they fit; otherwise counts a hit and charges nothing.
    public func tryCharge(_ bytes: Int) -> Bool {
        assert(bytes >= 0)
        guard fits(bytes) else {
            hits.increment()
            return false
        }
        charge(bytes)
        return true
    }

    /// Charges `bytes` whether or not they fit (what is already held, or a final small frame).
    @inline(__always) public func charge(_ bytes: Int) {
        assert(bytes >= 0)
        usedBytes += bytes
        gauge.set(usedBytes)
    }

    /// Gives back bytes charged earlier.
    @inline(__always) public func release(_ bytes: Int) {
        assert(bytes >= 0 && bytes <= usedBytes, "released more than was charged")
        usedBytes -= bytes
        gauge.set(usedBytes)
    }

    /// Counts a refusal decided by the caller (e.g. a send over its fair share).
    func countHit() { hits.increment() }
}
