/// The bytes one shard holds on behalf of its peers, against one shard-wide limit: send
/// queues (payload plus per-chunk overhead, see `SendQueue.entryOverheadBytes`), and whatever
/// the protocol layer charges (WebSocket messages being assembled, compression state).
///
/// Per-connection limits bound one peer; this bounds them all together, so that many peers
/// each just under their own limit cannot take the process's memory. Policy when the budget
/// is reached: whatever would take a connection past its fair share (limit / open
/// connections) is refused: a send is refused like a full queue (the protocol's slow-consumer
/// policy applies), a protocol charge fails (a WebSocket message being assembled: 1013).
/// Connections within their fair share keep being served, so hogs cannot starve the rest;
/// the price is that the total may pass the limit by up to the sum of fair shares: at most
/// twice the limit.
///
/// Shard thread only: plain integers, no atomics beyond the metric stores.
///
/// Every queued frame is charged and every sent one released, so a fan-out comes here twice
/// per subscriber and message: `charge` and `release` are a plain add each. The gauge is
/// stored once per loop turn (`publishGauge`), and `usedBytes` is exempt from the dynamic
/// exclusivity check (one thread, no overlapping access: it is never passed `inout`).
package final class ShardMemoryBudget {
    /// The limit (`IOConfiguration.maxBufferedBytesPerShard`).
    package let limitBytes: Int
    /// Bytes charged now.
    @exclusivity(unchecked) package private(set) var usedBytes = 0
    /// Open connections (the shard keeps it current), for the fair share.
    var connections = 0
    private let gauge: Counter
    private let hits: Counter
    /// The shard's send blocks (small-frame coalescing). Here because every send queue already
    /// holds a reference to the budget: a queue reaches the pool through it, and a `Connection`
    /// stays 80 bytes (issue 16 item 2). The filled part of a queued block is charged here like
    /// any queued payload; the pool bounds the rest (see `SendBlockPool`, "Bounds").
    let blocks: SendBlockPool

    init(limitBytes: Int, gauge: Counter, hits: Counter, blocks: SendBlockPool = .disabled()) {
        precondition(limitBytes > 0)
        self.limitBytes = limitBytes
        self.gauge = gauge
        self.hits = hits
        self.blocks = blocks
    }

    /// Whether `bytes` more fit under the limit.
    @inline(__always) public func fits(_ bytes: Int) -> Bool { bytes <= limitBytes - usedBytes }

    /// A connection's fair share of the budget when `connections` are open.
    @inline(__always) public func fairShareBytes(connections: Int) -> Int { limitBytes / max(1, connections) }

    /// Whether a connection already holding `holding` bytes may take `bytes` more: they fit
    /// under the limit, or keep it within its fair share.
    @inline(__always) public func admits(_ bytes: Int, holding: Int) -> Bool {
        fits(bytes) || holding + bytes <= fairShareBytes(connections: connections)
    }

    /// Charges `bytes` for a connection holding `holding` if ``admits(_:holding:)``;
    /// otherwise counts a hit and charges nothing.
    package func tryCharge(_ bytes: Int, holding: Int) -> Bool {
        assert(bytes >= 0 && holding >= 0)
        guard admits(bytes, holding: holding) else {
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
    }

    /// Gives back bytes charged earlier.
    @inline(__always) public func release(_ bytes: Int) {
        assert(bytes >= 0 && bytes <= usedBytes, "released more than was charged")
        usedBytes -= bytes
    }

    /// Stores `usedBytes` in the gauge (`switchboard_shard_buffered_bytes`). The shard calls
    /// it at the end of every loop turn, before it may sleep: the gauge is never more than
    /// one turn behind, and exact whenever the shard waits.
    func publishGauge() { gauge.set(usedBytes) }

    /// Counts a refusal decided by the caller (e.g. a send over its fair share).
    func countHit() { hits.increment() }
}
