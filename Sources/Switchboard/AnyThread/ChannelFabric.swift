import Atomics
import SwitchboardIO

/// What shards send each other about channels.
enum ChannelMessage {
    /// To the channel's owner: order this frame and fan it out.
    case publish(ChannelName, OutboundBytes)
    /// From the owner to every shard: deliver this frame, at this position in the channel.
    case deliver(ChannelName, OutboundBytes, ChannelPosition)
}

/// The cross-shard rings: one single-producer/single-consumer ring per ordered pair of shards
/// for publishes (to owners) and one for deliveries (from owners). Two sets, because an owner
/// under backpressure stops taking publishes but must never stop taking deliveries: a shard
/// that always drains deliveries cannot be part of a wait cycle. (A shard may leave a ring's
/// deliveries for one turn while it is under half full, `ChannelEngine.holdsDeliveries`: an
/// owner waiting for room waits on a full ring, which is never held.)
final class ChannelFabric: @unchecked Sendable {
    let shardCount: Int
    private let publishRings: [SPSCRing<ChannelMessage>]
    private let deliverRings: [SPSCRing<ChannelMessage>]
    /// Per delivery ring (from an owner to a shard): the owner is about to sleep with
    /// deliveries for that shard waiting for room in the ring, and wants a wake-up once the
    /// consumer drained some. Set by the owner (`wantsRoom`), cleared by the consumer that wakes
    /// it (`madeRoom`). Without it an owner with a backlog cannot sleep: it would spin until
    /// the consumer catches up (a stalled consumer: a core spent on nothing).
    private let roomWanted: [ManagedAtomic<Bool>]
    /// Set once the shards exist (before any shard thread runs).
    var shards: [Shard] = []

    init(shardCount: Int, ringCapacity: Int) {
        self.shardCount = shardCount
        publishRings = (0..<(shardCount * shardCount)).map { _ in SPSCRing(capacity: ringCapacity) }
        deliverRings = (0..<(shardCount * shardCount)).map { _ in SPSCRing(capacity: ringCapacity) }
        roomWanted = (0..<(shardCount * shardCount)).map { _ in ManagedAtomic(false) }
    }

    @inline(__always) func publishRing(from: Int, to: Int) -> SPSCRing<ChannelMessage> { publishRings[from * shardCount + to] }
    @inline(__always) func deliverRing(from: Int, to: Int) -> SPSCRing<ChannelMessage> { deliverRings[from * shardCount + to] }

    /// Owner `from`, before it sleeps with deliveries for `to` waiting: asks `to` for a wake-up
    /// once it drains the ring, and returns whether the ring has room already (then there is
    /// work now, and the owner must not sleep). Shard `from`'s thread only.
    ///
    /// The handshake with `madeRoom` is store-fence-load on both sides: the owner stores the
    /// flag and then reads the ring's head, the consumer stores the head (its drain) and then
    /// reads the flag, each with a sequentially consistent fence between. Of the two fences
    /// one comes first, so at least one side sees the other's store: either the owner sees
    /// the room and stays awake, or the consumer sees the flag and wakes it. Never both miss.
    func wantsRoom(from: Int, to: Int) -> Bool {
        let ring = deliverRing(from: from, to: to)
        // Relaxed: the fence below orders it before the head load.
        roomWanted[from * shardCount + to].store(true, ordering: .relaxed)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return ring.approximateCount < ring.capacity
    }

    /// Consumer `to`, after its drain of the ring from `from` took at least one message: wakes
    /// the owner if it waits for room (see `wantsRoom`). Shard `to`'s thread only.
    @inline(__always) func madeRoom(from: Int, to: Int) {
        // Orders the drain's head store (releasing) before the flag load: the store-load
        // pair that a releasing store and a later load alone do not order.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let flag = roomWanted[from * shardCount + to]
        // Relaxed load first: the common case (nobody waits) costs no read-modify-write.
        // The exchange makes one wake per request, whichever consumer drain sees it.
        if flag.load(ordering: .relaxed) && flag.exchange(false, ordering: .relaxed) {
            shards[from].wake()
        }
    }

    /// Whether any ring into `shard` holds work (doorbell re-check). Deliveries from the owners
    /// for which `held` is true are not work (`ChannelEngine.holdsDeliveries`).
    func hasInbound(_ shard: Int, includingPublishes: Bool, unless held: (Int) -> Bool) -> Bool {
        for from in 0..<shardCount where from != shard {
            if !deliverRing(from: from, to: shard).isEmptyApproximately && !held(from) { return true }
            if includingPublishes && !publishRing(from: from, to: shard).isEmptyApproximately { return true }
        }
        return false
    }
}
