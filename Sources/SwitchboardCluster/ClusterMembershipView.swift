/// What one node knows of the other nodes, fed with each membership heartbeat's answer (the
/// live nodes and their incarnations, read from Redis): it says which nodes died since the
/// last answer. Pure state, no I/O; the shard that announces its node owns it. Shard thread only.
///
/// A node dies when its incarnation changes (it restarted, even within its TTL: its sockets
/// are gone all the same), or when it is no longer a member (its heartbeat expired). Absence
/// counts only once this node has been connected to Redis for `graceMilliseconds`: Redis
/// restarted empty holds no member at all until each live node has reconnected (each after its
/// own backoff) and renewed, and those nodes did not die.
package struct ClusterMembershipView: Sendable {
    package let ownNode: Int
    /// How long after a (re)connect absence is not yet death.
    package let graceMilliseconds: Int64
    /// The other nodes believed alive, with the incarnation seen.
    package private(set) var known: [Int: UInt64] = [:]
    /// When the current Redis connection came up; nil while there is none.
    private var connectedSinceMilliseconds: Int64?

    package init(ownNode: Int, graceMilliseconds: Int64) {
        precondition(graceMilliseconds >= 0, "a grace period is not negative")
        self.ownNode = ownNode
        self.graceMilliseconds = graceMilliseconds
    }

    package mutating func connected(atMilliseconds now: Int64) { connectedSinceMilliseconds = now }
    package mutating func disconnected() { connectedSinceMilliseconds = nil }

    /// Node `node` left on its own (a graceful stop announced as incarnation `incarnation`):
    /// true when this is its death to report now (it is forgotten, so the heartbeats that no
    /// longer list it report nothing more); false when this view did not know it as that
    /// incarnation (never seen, already reported dead, or restarted since).
    package mutating func left(_ node: Int, incarnation: UInt64) -> Bool {
        guard node != ownNode, known[node] == incarnation else { return false }
        known[node] = nil
        return true
    }

    /// Takes one answer (`live`: node -> incarnation, this node included or not) and returns
    /// the nodes that died since the previous one, each with the incarnation that died,
    /// ascending by node; each death is reported once.
    package mutating func update(live: [Int: UInt64], nowMilliseconds now: Int64) -> [ClusterNodeDeath] {
        // An answer that raced a reconnect belongs to no connection: ignore it.
        guard let since = connectedSinceMilliseconds else { return [] }
        let absenceIsDeath = now - since >= graceMilliseconds
        var died: [ClusterNodeDeath] = []
        for (node, incarnation) in known {
            if let current = live[node] {
                if current != incarnation {
                    died.append(ClusterNodeDeath(node: node, incarnation: incarnation))        // restarted: the old one is gone
                    known[node] = current
                }
            } else if absenceIsDeath {
                died.append(ClusterNodeDeath(node: node, incarnation: incarnation))
                known[node] = nil
            }
        }
        for (node, incarnation) in live where node != ownNode && known[node] == nil {
            known[node] = incarnation
        }
        return died.sorted { $0.node < $1.node }
    }
}

/// A node's death as the membership sees it: which node, and which of its incarnations died
/// (a later one may be alive: the node restarted).
package struct ClusterNodeDeath: Equatable, Sendable {
    package let node: Int
    package let incarnation: UInt64

    package init(node: Int, incarnation: UInt64) {
        self.node = node
        self.incarnation = incarnation
    }
}
