import DequeModule
import SwitchboardIO

/// One shard's part of the channels: its local index (which of its sockets are subscribed to
/// what), the ordering of the channels it owns (offsets), and the cross-shard traffic (publish
/// rings to owners, delivery rings from owners, deliveries waiting for room). Shard thread only.
final class ChannelEngine {
    unowned(unsafe) let shard: Shard
    let index: Int
    let fabric: ChannelFabric
    let table: ConnectionTable
    let metrics: ProtocolMetrics
    unowned(unsafe) let webSockets: WebSocketConnectionDriver
    let maxSubscriptionsPerSocket: Int
    let maxChannelsPerShard: Int
    private var channels = LocalChannelIndex()
    /// Channels this shard owns: the last offset given out. New entries start at
    /// `offsetBase`, which only grows, so a channel's offsets keep increasing even if its entry
    /// was evicted at the `maxChannelsPerShard` bound.
    private var ownedOffsets: [ChannelName: UInt64] = [:]
    private var offsetBase: UInt64 = 0
    /// Deliveries that did not fit their ring, per target shard, oldest first. While any is
    /// waiting this shard takes no new publishes from its rings (backpressure reaches the
    /// publishers). A deque: the flush takes from the front in O(1).
    private var pendingDeliveries: [Deque<ChannelMessage>]
    private var pendingDeliveryCount = 0

    init(shard: Shard, fabric: ChannelFabric, table: ConnectionTable, metrics: ProtocolMetrics,
         webSockets: WebSocketConnectionDriver, configuration: BrokerConfiguration) {
        self.shard = shard
        index = shard.index
        self.fabric = fabric
        self.table = table
        self.metrics = metrics
        self.webSockets = webSockets
        maxSubscriptionsPerSocket = configuration.maxSubscriptionsPerSocket
        maxChannelsPerShard = configuration.maxChannelsPerShard
        pendingDeliveries = Array(repeating: Deque(), count: fabric.shardCount)
    }

    // MARK: - Local subscriptions

    /// Subscribes a socket of this shard. Synchronous and exact: every message the channel's
    /// owner orders after this returns reaches the socket.
    func subscribe(_ id: SocketID, to channel: ChannelName) -> SubscribeResult {
        guard table.isCurrent(id), shard.isOpen(id) else { return .notFound }
        let slot = table.slots[id.slot]
        if slot.subscriptions.contains(channel) { return .alreadySubscribed }
        guard slot.subscriptions.count < maxSubscriptionsPerSocket else {
            metrics.subscriptionLimitHits.increment()
            return .tooManySubscriptions
        }
        let result = channels.add(id, to: channel, mayCreate: channels.channelCount < maxChannelsPerShard)
        switch result {
        case .subscribed:
            table.insertSubscription(id, channel)
            publishGauges()
        case .tooManyChannels:
            metrics.channelLimitHits.increment()
        default:
            assertionFailure("the index and the slot disagree about \(id) in \(channel)")
        }
        return result
    }

    func unsubscribe(_ id: SocketID, from channel: ChannelName) -> Bool {
        guard table.isCurrent(id), table.removeSubscription(id, channel) else { return false }
        let removed = channels.remove(id, from: channel)
        assert(removed, "the index and the slot disagree about \(id) in \(channel)")
        publishGauges()
        return true
    }

    /// A closed socket leaves every channel (its slot's list; no scan of the index).
    func socketClosed(_ id: SocketID, subscriptions: Set<ChannelName>) {
        guard !subscriptions.isEmpty else { return }
        for channel in subscriptions {
            let removed = channels.remove(id, from: channel)
            assert(removed)
        }
        publishGauges()
    }

    /// Subscribes every local subscriber of `from` to `to` (this shard's share of
    /// copySubscriptions). Returns how many were added.
    @discardableResult
    func copyLocalSubscriptions(from: ChannelName, to: ChannelName) -> Int {
        guard let source = channels.subscribers(of: from) else { return 0 }
        var added = 0
        for id in source.subscribers where subscribe(id, to: to) == .subscribed { added += 1 }
        return added
    }

    func subscriptions(of id: SocketID) -> Set<ChannelName> {
        guard table.isCurrent(id) else { return [] }
        return table.slots[id.slot].subscriptions
    }

    func localSubscriberCount(_ channel: ChannelName) -> Int { channels.subscribers(of: channel)?.subscribers.count ?? 0 }

    private func publishGauges() {
        metrics.channels.set(channels.channelCount)
        metrics.subscriptions.set(channels.subscriptionCount)
    }

    // MARK: - Publish, order, deliver

    /// Publishes from this shard's thread: the frame goes to the channel's owner (this shard,
    /// or through the publish ring).
    func publish(_ channel: ChannelName, _ frame: OutboundBytes) -> PublishResult {
        let owner = channel.owner(shardCount: fabric.shardCount)
        if owner == index {
            return .accepted(offset: order(channel, frame))
        }
        guard fabric.publishRing(from: index, to: owner).tryPush(.publish(channel, frame)) else {
            metrics.publishesRefused.increment()
            return .refused
        }
        fabric.shards[owner].wake()
        return .accepted(offset: nil)
    }

    /// Owner side: gives the message the channel's next offset and fans it out to every shard.
    /// Every shard gets it (not only those with subscribers): a subscribe is then complete the
    /// moment it returns on the socket's shard, with no registration round trip that a publish
    /// from a third shard could overtake. Returns the offset.
    @discardableResult
    func order(_ channel: ChannelName, _ frame: OutboundBytes) -> UInt64 {
        assert(channel.owner(shardCount: fabric.shardCount) == index, "ordered by a shard that does not own \(channel)")
        metrics.publishes.increment()
        let offset: UInt64
        if let last = ownedOffsets[channel] {
            offset = last &+ 1
        } else {
            if ownedOffsets.count >= maxChannelsPerShard, let victim = ownedOffsets.first?.key {
                ownedOffsets.removeValue(forKey: victim)
                metrics.channelOffsetsEvicted.increment()
            }
            offset = offsetBase &+ 1
        }
        ownedOffsets[channel] = offset
        offsetBase = max(offsetBase, offset)
        for target in 0..<fabric.shardCount where target != index {
            // Behind waiting deliveries, never past them: per-channel order on every shard.
            if pendingDeliveries[target].isEmpty && fabric.deliverRing(from: index, to: target).tryPush(.deliver(channel, frame, offset)) {
                fabric.shards[target].wake()
            } else {
                pendingDeliveries[target].append(.deliver(channel, frame, offset))
                pendingDeliveryCount += 1
                metrics.crossShardBackpressure.increment()
            }
        }
        deliverLocally(channel, frame, offset)
        return offset
    }

    /// Writes one shared frame to every local subscriber (no copy: each queue holds a reference).
    func deliverLocally(_ channel: ChannelName, _ frame: OutboundBytes, _ offset: UInt64) {
        guard let local = channels.subscribers(of: channel) else { return }
        local.lastOffset = offset
        // Iterate a copy: the slow-consumer policy may close (and unsubscribe) a socket.
        let subscribers = local.subscribers
        for id in subscribers where webSockets.mayDeliver(id) {
            switch shard.send(id, frame) {
            case .queued:
                metrics.fanoutDeliveries.increment()
            case .notOpen:
                break
            case .overLimit:
                webSockets.applySlowConsumerPolicy(id)
            }
        }
    }

    private func flushPendingDeliveries() {
        guard pendingDeliveryCount > 0 else { return }
        for target in 0..<fabric.shardCount where !pendingDeliveries[target].isEmpty {
            let ring = fabric.deliverRing(from: index, to: target)
            var sent = 0
            while let message = pendingDeliveries[target].first, ring.tryPush(message) {
                pendingDeliveries[target].removeFirst()
                sent += 1
            }
            if sent > 0 {
                pendingDeliveryCount -= sent
                fabric.shards[target].wake()
            }
        }
        assert(pendingDeliveryCount == pendingDeliveries.reduce(0) { $0 + $1.count })
        metrics.crossShardPending.set(pendingDeliveryCount)
    }

    /// Drains the cross-shard rings: deliveries always, publishes only without backpressure.
    func loopTurn() {
        guard fabric.shardCount > 1 else { return }
        flushPendingDeliveries()
        for from in 0..<fabric.shardCount where from != index {
            fabric.deliverRing(from: from, to: index).drain(max: 4096) { message in
                guard case .deliver(let channel, let frame, let offset) = message else {
                    return assertionFailure("a publish on a delivery ring")
                }
                deliverLocally(channel, frame, offset)
            }
        }
        for from in 0..<fabric.shardCount where from != index {
            guard pendingDeliveryCount == 0 else { break }
            fabric.publishRing(from: from, to: index).drain(max: 1024) { message in
                guard case .publish(let channel, let frame) = message else {
                    return assertionFailure("a delivery on a publish ring")
                }
                order(channel, frame)
            }
        }
    }

    var hasPendingWork: Bool {
        pendingDeliveryCount > 0 || fabric.hasInbound(index, includingPublishes: true)
    }
}
