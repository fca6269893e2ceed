import DequeModule
import SwitchboardCluster
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
    private(set) var channels = LocalChannelIndex()
    /// Channels this shard owns and that are in use: epoch and last offset of each.
    private var owned: OwnedChannels
    /// Deliveries that did not fit their ring, per target shard, oldest first. A deque: the
    /// flush takes from the front in O(1).
    private var pendingDeliveries: [Deque<ChannelMessage>]
    private var pendingDeliveryCount = 0
    /// Highest `pendingDeliveryCount` seen (exported as a gauge; tests check it).
    private var pendingDeliveryPeak = 0
    /// The backlog bound, `max_pending_deliveries` (at least one fan-out's worth).
    let maxPendingDeliveries: Int
    /// `cross_shard_hold_deliveries`: whether a shard holds an owner's deliveries for a turn
    /// to merge them with its own forwarded publishes' (`holdsDeliveries`).
    let holdDeliveries: Bool
    /// Deliveries one ordered message adds at most: one per other shard.
    private let fanOutWidth: Int
    /// Shards that were given a message through a ring since the last `loopTurn`, and have not
    /// been woken for it: each is rung once, at the end of the turn (`ringDueShards`), not per
    /// message. Ringing a sleeping shard at the first of a turn's publishes made it runnable with
    /// one message in its ring; on a shared CPU it could then run a turn for that one message,
    /// one send per subscriber per message, while this shard still had the rest of its batch
    /// to order (issue 16 item 5). The wait this adds is the rest of this turn's dispatch, user
    /// space only: the flush's sends come after the ring.
    private var wakeDue: [Bool]
    /// How many entries of `wakeDue` are set (the common test is one compare).
    private var wakesDue = 0
    /// Per owner: whether the last `exchangeWithShards` held its deliveries back
    /// (`holdsDeliveries`); a hold lasts one turn at most.
    private var heldLastTurn: [Bool]
    /// The multi-node engine, nil on a single node (ChannelEngine+Cluster.swift).
    var cluster: ClusterShardEngine?
    /// Channels whose missed messages are being read back from Redis (ChannelRecovery.swift).
    var recovery = ChannelRecovery(maxMessages: 0)
    /// Remote socket calls this shard waits on (RemoteSocketCalls.swift); cluster only.
    var remoteCalls = RemoteSocketCalls()

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
        wakeDue = Array(repeating: false, count: fabric.shardCount)
        heldLastTurn = Array(repeating: false, count: fabric.shardCount)
        fanOutWidth = fabric.shardCount - 1
        maxPendingDeliveries = max(configuration.maxPendingDeliveries, fanOutWidth)
        holdDeliveries = configuration.crossShardHoldDeliveries
        owned = OwnedChannels(epochBase: UInt64.random(in: .min ... .max),
                              retentionMilliseconds: configuration.channelOffsetRetentionMilliseconds,
                              capacity: maxChannelsPerShard)
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
            clusterInterestMayHaveStarted(channel)
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
        clusterInterestMayHaveEnded(channel)
        return true
    }

    /// A closed socket leaves every channel (its slot's list; no scan of the index).
    func socketClosed(_ id: SocketID, subscriptions: Set<ChannelName>) {
        guard !subscriptions.isEmpty else { return }
        for channel in subscriptions {
            let removed = channels.remove(id, from: channel)
            assert(removed)
            clusterInterestMayHaveEnded(channel)
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

    /// Position of the last message of `channel` delivered on this shard; nil when no socket
    /// of this shard is subscribed (the shard keeps nothing about the channel then) or nothing
    /// was delivered since the first one subscribed.
    func lastPosition(of channel: ChannelName) -> ChannelPosition? {
        channels.subscribers(of: channel)?.lastPosition
    }

    // MARK: - Publish, order, deliver

    /// The backpressure gate, the same for every publish path: a message is ordered only if
    /// its fan-out fits in the delivery backlog (`max_pending_deliveries`). Publishes from
    /// other shards wait in their rings while it is closed (their publishers are refused when
    /// a ring fills); publishes made on this shard or through its inbox are refused.
    private var admitsPublish: Bool { pendingDeliveryCount + fanOutWidth <= maxPendingDeliveries }

    /// Publishes from this shard's thread: the frame goes to the channel's owner (this shard,
    /// or through the publish ring).
    func publish(_ channel: ChannelName, _ frame: OutboundBytes) -> PublishResult {
        let owner = channel.owner(shardCount: fabric.shardCount)
        if owner == index {
            guard let position = orderIfAdmitted(channel, frame) else { return .refused }
            return .accepted(offset: position.offset)
        }
        guard fabric.publishRing(from: index, to: owner).tryPush(.publish(channel, frame)) else {
            metrics.publishesRefused.increment()
            return .refused
        }
        wakeAtEndOfTurn(owner)
        return .accepted(offset: nil)
    }

    /// Owner side, for a publish made on this shard or arriving through its inbox: ordered if
    /// the backpressure gate is open, refused and counted otherwise (nil).
    @discardableResult
    func orderIfAdmitted(_ channel: ChannelName, _ frame: OutboundBytes) -> ChannelPosition? {
        guard admitsPublish else {
            metrics.publishesRefused.increment()
            metrics.publishBacklogLimitHits.increment()
            return nil
        }
        return order(channel, frame)
    }

    /// Owner side: gives the message the channel's next position and fans it out to every
    /// shard. Every shard gets it (not only those with subscribers): a subscribe is then
    /// complete the moment it returns on the socket's shard, with no registration round trip
    /// that a publish from a third shard could overtake. Callers have checked the gate.
    @discardableResult
    private func order(_ channel: ChannelName, _ frame: OutboundBytes) -> ChannelPosition {
        assert(channel.owner(shardCount: fabric.shardCount) == index, "ordered by a shard that does not own \(channel)")
        assert(admitsPublish, "ordered past the backpressure gate")
        metrics.publishes.increment()
        let (position, evicted) = owned.next(channel, nowMilliseconds: shard.nowMilliseconds)
        if evicted { metrics.channelOffsetsEvicted.increment() }
        // A new incarnation: the gauge follows at once (the tick only lowers it).
        if position.offset == 1 { metrics.channelOffsets.set(owned.count) }
        for target in 0..<fabric.shardCount where target != index {
            // Behind waiting deliveries, never past them: per-channel order on every shard.
            if pendingDeliveries[target].isEmpty && fabric.deliverRing(from: index, to: target).tryPush(.deliver(channel, frame, position)) {
                wakeAtEndOfTurn(target)
            } else {
                pendingDeliveries[target].append(.deliver(channel, frame, position))
                pendingDeliveryCount += 1
                metrics.crossShardBackpressure.increment()
            }
        }
        if pendingDeliveryCount > pendingDeliveryPeak {
            pendingDeliveryPeak = pendingDeliveryCount
            metrics.crossShardPendingPeak.set(pendingDeliveryPeak)
        }
        assert(pendingDeliveryCount <= maxPendingDeliveries, "delivery backlog over its bound")
        deliverLocally(channel, frame, position)
        return position
    }

    /// Channels with at least this many local subscribers have their fan-out time measured and
    /// charged to the publishing socket's turn slice at a tenth (`WebSocketConnectionDriver.fanOutNanoseconds`);
    /// two clock reads are then under a nanosecond per delivery. Smaller fan-outs count in full.
    static let fanOutTimedSubscribers = 64

    /// Writes one shared frame to every local subscriber (no copy: each queue holds a reference,
    /// all of them taken in one step by `SharedFrame` and the unused ones given back in one).
    func deliverLocally(_ channel: ChannelName, _ frame: OutboundBytes, _ position: ChannelPosition) {
        guard let local = channels.subscribers(of: channel) else { return }
        local.lastPosition = position
        // Iterate a copy: the slow-consumer policy may close (and unsubscribe) a socket.
        let subscribers = local.subscribers
        let timed = subscribers.count >= Self.fanOutTimedSubscribers
        let start = timed ? monotonicNanoseconds() : 0
        // Strong locals for the loop: one retain each per message, not per subscriber.
        let shard = self.shard, webSockets = self.webSockets
        var shared = SharedFrame(frame, references: subscribers.count)
        var delivered = 0
        for id in subscribers where webSockets.mayDeliver(id) {
            switch shard.send(id, &shared) {
            case .queued:
                delivered += 1
            case .notOpen:
                break
            case .overLimit:
                webSockets.applySlowConsumerPolicy(id)
            }
        }
        // Once per message, not per delivery.
        metrics.fanoutDeliveries.increment(by: delivered)
        if timed { webSockets.exemptFanOut(nanoseconds: monotonicNanoseconds() &- start) }
    }

    /// On the shard's tick: forgets owned channels that went quiet (see `OwnedChannels`).
    func tick(nowMilliseconds: Int64) {
        let forgotten = owned.forgetIdle(nowMilliseconds: nowMilliseconds)
        if forgotten > 0 { metrics.channelOffsetsExpired.increment(by: forgotten) }
        metrics.channelOffsets.set(owned.count)
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
                wakeAtEndOfTurn(target)
            }
        }
        assert(pendingDeliveryCount == pendingDeliveries.reduce(0) { $0 + $1.count })
        metrics.crossShardPending.set(pendingDeliveryCount)
    }

    /// Drains the cross-shard rings: deliveries always, publishes only without backpressure.
    /// The single-shard test inline in the dispatcher's `loopTurn` (once per loop turn: as a
    /// call, ~25 instructions for nothing on one shard, issue 16 item 3), the work out of line.
    @inline(__always) func loopTurn() {
        guard fabric.shardCount > 1 else { return }
        exchangeWithShards()
    }

    /// Marks `target` to be rung at the end of this turn (see `wakeDue`).
    @inline(__always) private func wakeAtEndOfTurn(_ target: Int) {
        shard.assertOnShardThread()
        assert(target != index, "a shard does not wake itself")
        if !wakeDue[target] {
            wakeDue[target] = true
            wakesDue += 1
        }
    }

    /// Rings every shard given a message since the last call, once each. Called last in
    /// `exchangeWithShards` (after the drains, whose ordering pushes too), before the shard's
    /// flush; a message pushed later in the turn (a close's publish in `finalize`) keeps the
    /// loop from sleeping (`hasCrossShardWork`) until the next turn rings for it, and
    /// `shardStopped` rings what the last turn left.
    func ringDueShards() {
        shard.assertOnShardThread()
        guard wakesDue > 0 else { return }
        for target in 0..<fabric.shardCount where wakeDue[target] {
            wakeDue[target] = false
            fabric.shards[target].wake()
        }
        wakesDue = 0
        assert(!wakeDue.contains(true), "a due wake left after ringing")
    }

    /// Whether this turn leaves the deliveries from owner `owner` in their ring, to take them
    /// with those of the publishes this shard forwarded to `owner` and `owner` has not taken
    /// yet: their deliveries come right behind, and the owner rings this shard for them.
    ///
    /// Why (issue 16 item 5): a closed-loop publisher on a shard that does not own its channel
    /// has its window in two stages, its newer publishes at the owner and its older ones'
    /// deliveries back here. Taken as they come, the two halves never meet again: each
    /// subscriber's socket write carried half the window (8 frames, not 16, at 1 → 10,000 over
    /// two shards on one CPU), and the kernel's per-write cost rose with it (1.5-2.1x the
    /// CPU per delivery of one shard). Held for one turn, the halves merge, and stay merged.
    ///
    /// Bounds, so a hold never stops progress:
    /// - one turn: a shard that held from `owner` last turn drains this turn, so continuous
    ///   forwarding delays deliveries by a turn at most;
    /// - half the ring: a ring at least half full is always drained, so an owner whose
    ///   deliveries wait for room (its gate closed, and so not taking the publishes a hold
    ///   waits for) is never waiting on a holding shard: the wait cycle the two ring sets
    ///   exist to prevent cannot form;
    /// - `cross_shard_hold_deliveries = false` turns it off.
    @inline(__always) private func holdsDeliveries(from owner: Int) -> Bool {
        holdDeliveries && !heldLastTurn[owner] && mayHoldDeliveries(from: owner)
    }

    /// The hold's condition but the one-turn rule: the ring under half full, and publishes
    /// this shard forwarded to `owner` not all taken yet.
    @inline(__always) private func mayHoldDeliveries(from owner: Int) -> Bool {
        let deliveries = fabric.deliverRing(from: owner, to: index)
        guard deliveries.approximateCount < deliveries.capacity / 2 else { return false }
        return !fabric.publishRing(from: index, to: owner).isTakenByConsumer
    }

    @inline(never) private func exchangeWithShards() {
        shard.assertOnShardThread()  // the rings' consumer side and `heldLastTurn` are this shard's
        flushPendingDeliveries()
        for from in 0..<fabric.shardCount where from != index {
            let ring = fabric.deliverRing(from: from, to: index)
            if ring.isEmptyApproximately { heldLastTurn[from] = false; continue }
            if holdsDeliveries(from: from) {
                heldLastTurn[from] = true
                metrics.crossShardDeliveriesHeld.increment()
                continue
            }
            heldLastTurn[from] = false
            let drained = ring.drain(max: 4096) { message in
                guard case .deliver(let channel, let frame, let position) = message else {
                    return assertionFailure("a publish on a delivery ring")
                }
                deliverLocally(channel, frame, position)
            }
            // Room for an owner whose deliveries wait for it (it may sleep meanwhile).
            if drained > 0 { fabric.madeRoom(from: from, to: index) }
        }
        for from in 0..<fabric.shardCount where from != index {
            // As many as the gate admits: each adds at most `fanOutWidth` deliveries. The rest
            // wait in the ring (its publisher is refused once it fills).
            let admitted = min(1024, (maxPendingDeliveries - pendingDeliveryCount) / fanOutWidth)
            guard admitted > 0 else { break }
            fabric.publishRing(from: from, to: index).drain(max: admitted) { message in
                guard case .publish(let channel, let frame) = message else {
                    return assertionFailure("a delivery on a publish ring")
                }
                order(channel, frame)
            }
        }
        ringDueShards()
    }

    /// Whether there is channel work to do now (the loop must not sleep): deliveries in, a
    /// publish in while the gate admits one, or waiting deliveries with room in their ring.
    /// Deliveries waiting for a full ring are no reason to stay awake: the consumer wakes this
    /// shard once it drained some (`ChannelFabric.wantsRoom`). Called before the loop sleeps.
    /// As `loopTurn`, the single-shard test inline (`mayBlock` asks once per sleeping turn).
    @inline(__always) var hasPendingWork: Bool {
        guard fabric.shardCount > 1 else { return false }
        return hasCrossShardWork
    }

    @inline(never) private var hasCrossShardWork: Bool {
        // A wake still owed (a message pushed after this turn's `loopTurn`): go round once more.
        if wakesDue > 0 { return true }
        let admitsPublishes = (maxPendingDeliveries - pendingDeliveryCount) / fanOutWidth > 0
        // Deliveries held this turn are no work: the owner rings this shard once it took the
        // publishes the hold waits for (after `prepareToSleep`, the re-check sees that take).
        if fabric.hasInbound(index, includingPublishes: admitsPublishes, unless: { [unowned(unsafe) self] in
            heldLastTurn[$0] && mayHoldDeliveries(from: $0)
        }) { return true }
        guard pendingDeliveryCount > 0 else { return false }
        var hasRoom = false
        for target in 0..<fabric.shardCount where !pendingDeliveries[target].isEmpty {
            // Every waiting target is asked (not only up to the first with room): each must
            // wake this shard if it sleeps after all.
            if fabric.wantsRoom(from: index, to: target) { hasRoom = true }
        }
        return hasRoom
    }
}
