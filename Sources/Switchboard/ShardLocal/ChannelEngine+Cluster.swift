import SwitchboardCluster
import SwitchboardIO

/// The channel engine's side of a multi-node cluster (issue 13), kept apart from its
/// single-node ordering: with `cluster_engine = redis` a publish goes to Redis (which orders it
/// for every node), and messages come back from Redis for the channels this shard has local
/// subscribers for. The cross-shard fabric is then unused for channels. Shard thread only.
extension ChannelEngine: ClusterEngineDelegate {
    /// Attaches the shard's cluster engine (before the shard runs) and starts it once it runs.
    func attachCluster(_ engine: ClusterShardEngine) {
        assert(cluster == nil, "one cluster engine per shard")
        cluster = engine
        engine.delegate = self
    }

    func startCluster(on shard: Shard) { cluster?.start(on: shard) }

    /// Publishes a message: through the cluster engine when there is one (fail-fast: refused
    /// while Redis is unreachable or this shard's publishes in flight are at their bound),
    /// else through the channel's owner shard as on a single node.
    func publish(_ channel: ChannelName, message: SocketMessage) -> PublishResult {
        guard let cluster else { return publish(channel, .webSocketFrame(message)) }
        let result: ClusterPublishResult
        switch message {
        case .text(var text):
            result = text.withUTF8 { cluster.publish(channel: channel.bytes, kind: .text, payload: UnsafeRawBufferPointer($0)) }
        case .binary(let bytes):
            result = bytes.withUnsafeBytes { cluster.publish(channel: channel.bytes, kind: .binary, payload: $0) }
        }
        guard result == .sent else {
            metrics.publishesRefused.increment()
            return .refused
        }
        return .accepted(offset: nil)
    }

    /// After a subscribe: the channel's first local subscriber makes this shard interested.
    func clusterInterestMayHaveStarted(_ channel: ChannelName) {
        guard let cluster, localSubscriberCount(channel) == 1 else { return }
        cluster.interestAdded(channel.bytes)
    }

    /// After an unsubscribe or close: the last local subscriber leaving ends the interest.
    func clusterInterestMayHaveEnded(_ channel: ChannelName) {
        guard let cluster, localSubscriberCount(channel) == 0 else { return }
        cluster.interestRemoved(channel.bytes)
    }

    /// A node died (issue 13's membership): this shard's sockets never belonged to it, so the
    /// channel engine keeps nothing of it; the application's handler hears it.
    func clusterNodeDied(_ node: Int) {
        webSockets.worker.handleClusterNodeDied(node)
    }

    func clusterDeliver(channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer, position: ClusterPosition) {
        guard channel.space == nil else {
            // A protocol's channel (the broadcaster's): its handler on this shard delivers it.
            return Broker.receiveProtocolChannelMessage(channel, payload, position, worker: webSockets.worker)
        }
        let frame = OutboundBytes.webSocketFrame(kind == .text ? .text : .binary, payload)
        deliverLocally(ChannelName(channel.name), frame, ChannelPosition(epoch: position.epoch, offset: position.offset))
    }
}
