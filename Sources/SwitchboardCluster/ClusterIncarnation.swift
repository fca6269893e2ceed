import Synchronization

/// This process's incarnation of its cluster node: a random number picked at start, so a node
/// restarted within its TTL is a new member to the others, and picked again when the others
/// declared this one dead while it lived. One per process (the broker's), shared by its shards.
///
/// What a protocol writes to Redis for the node is tagged with the incarnation current at the
/// write, and the clean-up after a death removes only what the dead incarnation wrote. So a
/// clean-up that runs late (another node learns of the death after this one came back, or
/// after a restarted process registered its state again) never removes the new state.
///
/// Thread rules: `renew` only on the shard that announces the membership (shard 0's engine);
/// `current` on any thread. In Redis Cluster mode the membership moves between links of that
/// one shard, and every link reads this object, so a new link is not a new incarnation.
package final class ClusterIncarnation: Sendable {
    /// Never 0: 0 would read as "no incarnation" in the protocols' scripts' arguments.
    private let value: Atomic<UInt64>

    package init(_ initial: UInt64 = ClusterIncarnation.random()) {
        precondition(initial != 0, "an incarnation is not 0")
        value = Atomic(initial)
    }

    package static func random() -> UInt64 { UInt64.random(in: 1 ... .max) }

    /// The incarnation now. Acquiring: pairs with `renew`'s releasing exchange, so a shard that
    /// heard of the renewal (the death event is posted after it) reads the new value.
    package var current: UInt64 { value.load(ordering: .acquiring) }

    /// Picks a new incarnation (the others declared this one dead) and returns the one it
    /// replaces, the incarnation that died. Releasing: the death event posted after this call
    /// carries the old value, and a shard reading `current` once it holds the event reads the
    /// new one.
    @discardableResult
    package func renew() -> UInt64 {
        var next = Self.random()
        while next == current { next = Self.random() }
        let old = value.exchange(next, ordering: .acquiringAndReleasing)
        assert(old != next, "a renewal changes the incarnation")
        return old
    }
}
