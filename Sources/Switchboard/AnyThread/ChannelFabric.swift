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
/// that always drains deliveries cannot be part of a wait cycle.
final class ChannelFabric: @unchecked Sendable {
    let shardCount: Int
    private let publishRings: [SPSCRing<ChannelMessage>]
    private let deliverRings: [SPSCRing<ChannelMessage>]
    /// Set once the shards exist (before any shard thread runs).
    var shards: [Shard] = []

    init(shardCount: Int, ringCapacity: Int) {
        self.shardCount = shardCount
        publishRings = (0..<(shardCount * shardCount)).map { _ in SPSCRing(capacity: ringCapacity) }
        deliverRings = (0..<(shardCount * shardCount)).map { _ in SPSCRing(capacity: ringCapacity) }
    }

    @inline(__always) func publishRing(from: Int, to: Int) -> SPSCRing<ChannelMessage> { publishRings[from * shardCount + to] }
    @inline(__always) func deliverRing(from: Int, to: Int) -> SPSCRing<ChannelMessage> { deliverRings[from * shardCount + to] }

    /// Whether any ring into `shard` holds work (doorbell re-check).
    func hasInbound(_ shard: Int, includingPublishes: Bool) -> Bool {
        for from in 0..<shardCount where from != shard {
            if !deliverRing(from: from, to: shard).isEmptyApproximately { return true }
            if includingPublishes && !publishRing(from: from, to: shard).isEmptyApproximately { return true }
        }
        return false
    }
}
