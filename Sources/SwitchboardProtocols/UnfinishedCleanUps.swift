import SwitchboardCluster

/// The clean-ups of dead incarnations (`ClusterKeys.cleanUpInSteps`) that Redis stopped
/// answering part of the way, kept by shard 0 until its next Redis connection, which sends each
/// again from the step it reached.
///
/// Why: every live node's shard 0 cleans up a death it hears of, and the dead node's next
/// process cleans up its own earlier incarnations when it reaches Redis. But a Redis outage
/// reaches every node at once (a death reported during it finds every clean-up unanswered),
/// and a node that never comes back never cleans up after itself: without this, its entries
/// stayed in Redis for good (its members listed in their roles, its RPC ids in the directory).
///
/// Thread rules: owned by one protocol core on one shard (shard 0, the one that runs
/// clean-ups), used only on that shard's thread; no locks.
///
/// Bounded by node id, not by a setting: one kept clean-up per node id (0...255, the range
/// `ClusterConfiguration` accepts), so at most 256. A later death of the same node replaces
/// the kept one: the newer incarnation it names was live after the kept one died, and a node's
/// shard 0 removes every other incarnation's entries each time it reaches Redis (its own
/// clean-up, which is never kept: it runs again at every connection). Only deaths of one
/// incarnation are kept: a death declared by hand (every incarnation) is the operator's to
/// repeat, and sent later it would remove what a restarted process of the node wrote since.
struct UnfinishedCleanUps {
    /// One dead incarnation's clean-up: the `HSCAN` cursor of the step Redis did not answer.
    struct CleanUp: Equatable {
        let node: Int
        let incarnation: UInt64
        let cursor: [UInt8]
    }

    /// The node ids `ClusterConfiguration` accepts, and so the most clean-ups kept.
    static let nodeIds = ClusterConfiguration.nodeIDs

    /// By node id.
    private var kept: [Int: CleanUp] = [:]

    var count: Int { kept.count }

    /// Keeps `cleanUp` for the next connection, replacing the node's kept one if any. A node id
    /// outside `nodeIds` is not kept (no configured node has one; a death is reported from what
    /// Redis holds, and Redis is not trusted to keep the bound).
    mutating func keep(_ cleanUp: CleanUp) {
        guard Self.nodeIds.contains(cleanUp.node) else { return }
        assert(ClusterKeys.isCursor(cleanUp.cursor), "an HSCAN cursor: decimal digits")
        kept[cleanUp.node] = cleanUp
        assert(kept.count <= Self.nodeIds.count)
    }

    /// Every kept clean-up, by node id, and none kept after: each is kept again if its steps
    /// go unanswered again.
    mutating func takeAll() -> [CleanUp] {
        defer { kept.removeAll() }
        return kept.values.sorted { $0.node < $1.node }
    }
}
