import SwitchboardCluster
import SwitchboardIO
import SwitchboardWebSocket

/// The channel engine's side of a multi-node cluster (issue 13), kept apart from its
/// single-node ordering: with `cluster_engine = redis` a publish goes to Redis (which orders it
/// for every node), and messages come back from Redis for the channels this shard has local
/// subscribers for. The cross-shard fabric is then unused for channels. Shard thread only.
extension ChannelEngine: ClusterEngineDelegate {
    /// Attaches the shard's cluster engine (before the shard runs) and starts it once it runs.
    func attachCluster(_ engine: ClusterShardEngine, recoveryMaxMessages: Int) {
        assert(cluster == nil, "one cluster engine per shard")
        cluster = engine
        recovery = ChannelRecovery(maxMessages: recoveryMaxMessages)
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
        return clusterPublished(result)
    }

    /// Publishes a message given as its opcode (text or binary) and bytes (a handler's
    /// ``SocketMessageView``): the same paths as `publish(_:message:)`, with no value made.
    func publish(_ channel: ChannelName, _ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> PublishResult {
        assert(opcode == .text || opcode == .binary)
        guard let cluster else { return publish(channel, .webSocketFrame(opcode, payload)) }
        return clusterPublished(cluster.publish(channel: channel.bytes, kind: opcode == .text ? .text : .binary, payload: payload))
    }

    private func clusterPublished(_ result: ClusterPublishResult) -> PublishResult {
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
        recovery.cancel(channel)
        cluster.interestRemoved(channel.bytes)
    }

    /// A node died (issue 13's membership): this shard's sockets never belonged to it, so the
    /// channel engine keeps nothing of it; the application's handler hears it.
    func clusterNodeDied(_ node: Int, incarnation: UInt64) {
        webSockets.worker.handleClusterNodeDied(node, incarnation: incarnation)
    }

    /// The shard's Redis connection is up (again): the protocols write their state again.
    func clusterConnected() {
        webSockets.worker.handleClusterConnected()
    }

    /// The shard's Redis backlog drained after it refused something for lack of room: the
    /// protocols send again what they kept.
    func clusterBacklogDrained() {
        webSockets.worker.handleClusterBacklogDrained()
    }

    /// A message from Redis: delivered, unless its channel is being recovered (held until the
    /// read answers) or it shows a gap after the last delivered one (then the gap is read back
    /// first). A new epoch in live traffic means the stream the subscribers followed is gone:
    /// reported as not recovered, then delivered. A protocol's channel (`ClusterChannel.space`,
    /// the broadcaster's) goes to its handler on this shard instead, which keeps its own log.
    func clusterDeliver(channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer, position: ClusterPosition) {
        guard channel.space == nil else {
            return Broker.receiveProtocolChannelMessage(channel, payload, position, worker: webSockets.worker)
        }
        let name = ChannelName(channel.name)
        guard let local = channels.subscribers(of: name) else { return }
        let frame = OutboundBytes.webSocketFrame(kind == .text ? .text : .binary, payload)
        let at = ChannelPosition(epoch: position.epoch, offset: position.offset)
        if recovery.isReading(name) { return recovery.hold(name, .init(position: at, frame: frame)) }
        if let last = local.lastPosition {
            if last.epoch != at.epoch {
                reportGap(name, recovered: false)
            } else if at.offset > last.offset + 1 {
                // Missed offsets: read them back, this message waits behind them.
                recover(name, after: last)
                if recovery.isReading(name) { return recovery.hold(name, .init(position: at, frame: frame)) }
            }
        }
        deliverLocally(name, frame, at)
    }

    /// The subscriptions were made again (reconnect, or moved to another master): every
    /// broker channel that delivered something reads what it missed. A protocol's channels are
    /// not read here: the broadcaster recovers from the stream when a client subscribes with
    /// `since` (`readStream`), not on the engine's reconnect.
    func clusterResubscribed(_ subscribed: [ClusterChannel]) {
        for channel in subscribed where channel.space == nil {
            let name = ChannelName(channel.name)
            guard !recovery.isReading(name), let last = channels.subscribers(of: name)?.lastPosition else { continue }
            recover(name, after: last)
        }
    }

    /// Reads `channel`'s history after `last` (or, with recovery off, reports the gap at once).
    private func recover(_ channel: ChannelName, after last: ChannelPosition) {
        guard let cluster, recovery.maxMessages > 0 else {
            cluster?.metrics.recoveriesOverLimit.increment()
            return reportGap(channel, recovered: false)
        }
        let generation = recovery.begin(channel)
        cluster.readHistory(.broker(channel.bytes), after: ClusterPosition(epoch: last.epoch, offset: last.offset),
                            maxMessages: recovery.maxMessages) { [unowned self] read in
            recovered(channel, generation: generation, after: last, read)
        }
    }

    /// The history read answered: deliver what was missed, then what was held meanwhile and
    /// is newer; or report the gap as not recovered and deliver what was held.
    private func recovered(_ channel: ChannelName, generation: UInt64, after last: ChannelPosition, _ read: ClusterHistoryRead) {
        guard let (held, overflowed) = recovery.finish(channel, generation: generation) else { return }  // cancelled
        guard let local = channels.subscribers(of: channel), let metrics = cluster?.metrics else { return }
        var delivered: ChannelPosition?
        switch (read, overflowed) {
        case (.unavailable, _):
            // The connection was lost before the answer: its reconnect reads again from the
            // same position (kept: what was held is in that read too, or reported lost then).
            return
        case (.messages(let missed), false):
            delivered = missed.last.map { ChannelPosition(epoch: $0.position.epoch, offset: $0.position.offset) } ?? last
            if !missed.isEmpty {
                metrics.gapsRecovered.increment()
                metrics.messagesRecovered.increment(by: missed.count)
                webSockets.worker.handleChannelGap(channel, recovered: true, subscribers: local.subscribers)
            }
            for entry in missed {
                let opcode: WebSocketOpcode = entry.kind == .text ? .text : .binary
                let frame = entry.payload.withUnsafeBytes { OutboundBytes.webSocketFrame(opcode, $0) }
                deliverLocally(channel, frame, ChannelPosition(epoch: entry.position.epoch, offset: entry.position.offset))
            }
        case (.messages, true), (.lost(.overLimit), _):
            metrics.recoveriesOverLimit.increment()
            reportGap(channel, recovered: false)
        case (.lost, _):
            reportGap(channel, recovered: false)
        }
        if overflowed { return }
        for message in held {
            // Already given by the history: same stream, offset not past it.
            if let d = delivered, message.position.epoch == d.epoch, message.position.offset <= d.offset { continue }
            deliverLocally(channel, message.frame, message.position)
        }
    }

    /// Tells the handler that `channel`'s subscribers on this shard missed messages for good,
    /// and forgets the channel's position: the next message starts a fresh count.
    private func reportGap(_ channel: ChannelName, recovered: Bool) {
        guard let local = channels.subscribers(of: channel) else { return }
        assert(!recovered, "a recovered gap is reported where its messages are delivered")
        cluster?.metrics.gapsUnrecovered.increment()
        local.lastPosition = nil
        webSockets.worker.handleChannelGap(channel, recovered: false, subscribers: local.subscribers)
    }
}
