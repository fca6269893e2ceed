import Switchboard
import SwitchboardCluster

// # The broadcaster across nodes (issue 13)
//
// On one node a channel's owner shard orders its messages (offset, epoch) and keeps its
// history. With `cluster_engine = redis` Redis is the owner, for every node, through the
// cluster engine's own channel mechanism (the one the broker's channels use), in the
// broadcaster's space `bc` (`ClusterChannel`), so its names never meet the broker's channels:
//
// - interest: a shard subscribes to a channel's Redis pub/sub channel
//   (`P:p:{bc:CHANNEL}:pub`; SSUBSCRIBE on the slot's master in a Redis Cluster) when its first
//   local subscriber arrives and unsubscribes when the last one leaves (unsubscribe, close, a
//   token refresh that drops the channel). A node with no subscriber of a channel never
//   receives its traffic.
// - publish (WebSocket or REST, on any node and shard): the engine's one script on the
//   publishing shard's Redis connection (the channel's master in a Redis Cluster, with
//   SPUBLISH) assigns the channel's next offset (its epoch is created when Redis has none: a
//   new channel, or a stream Redis lost), appends the message to the channel's history
//   (trimmed to the channel's `maxMessages`; emptied when the message is not kept, as on one
//   node) and publishes it to the interested shards. The publisher's answer carries the
//   offset and epoch from the script. The epoch is Redis's: a 64-bit number, in decimal.
// - fan-out: each interested shard receives the message itself, in the channel's Redis
//   order, and delivers it to its subscribers: every node delivers a channel's messages in
//   offset order, with the same offsets and epoch.
// - recovery (`subscribe` with `since`, on any node): after the subscription (and its Redis
//   subscribe) the engine reads the channel's epoch, last offset and history on the same
//   connection, so every message ordered after the read reaches this shard; the answer is
//   computed here with the single-node log (`BroadcasterChannelLog.recover`). Live messages
//   that arrive meanwhile are held back and merged by offset, as on one node.
//
// Keys: the engine's (`ClusterChannelNames`): `P:p:{bc:CHANNEL}:meta` (hash: epoch, offset)
// and `P:p:{bc:CHANNEL}:history` (list of the framed messages), one hash tag per channel (one
// Redis Cluster slot per channel). Bounds: the history holds at most the channel's
// `maxMessages`; both keys expire `maxAgeMilliseconds` after the last publish (or
// `cluster_history_ttl_ms` when the channel has no age limit), after which the next publish
// starts a new epoch.
//
// Fail-fast: with Redis unreachable a publish or a recovering subscribe fails at once ("the
// channel's owner is overloaded, try again"; a publish is counted in the broadcaster's
// `publishes_refused_total`). Like every cluster channel, a subscribe without `since` is exact
// only once Redis has the shard's subscription: a message published elsewhere within about
// one round trip of the channel's first subscribe on a shard can be missed.

/// A broadcaster message as the cluster carries and stores it (the engine adds its position):
/// id, create time, channel, event, each length-prefixed, then the payload.
enum BroadcasterClusterWire {
    /// The broadcaster's space among the cluster's channels.
    static func channel(_ name: String) -> ClusterChannel { .inSpace("bc", Array(name.utf8)) }

    static func body(_ m: BroadcasterMessage) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(m.payload.count + m.id.utf8.count + m.channel.utf8.count + m.event.utf8.count + 20)
        func text(_ s: String) {
            let u = Array(s.utf8)
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: u.count >> shift)) }
            out += u
        }
        text(m.id)
        let t = UInt64(bitPattern: m.createTimeNanoseconds)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: t >> UInt64(shift))) }
        text(m.channel)
        text(m.event)
        out += m.payload
        return out
    }

    /// The message of `body` at `position` (offset, and the epoch in decimal); nil for
    /// anything malformed.
    static func decode(_ bytes: UnsafeRawBufferPointer, at position: ClusterPosition) -> BroadcasterMessage? {
        guard position.offset <= UInt64(Int.max) else { return nil }
        return decode(bytes, offset: Int(position.offset), epoch: String(position.epoch))
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, offset: Int, epoch: String) -> BroadcasterMessage? {
        var i = 0
        func text() -> String? {
            guard bytes.count - i >= 4 else { return nil }
            var n = 0
            for k in 0..<4 { n = n << 8 | Int(bytes[i + k]) }
            guard bytes.count - i - 4 >= n else { return nil }
            defer { i += 4 + n }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(i + 4)..<(i + 4 + n)]), as: UTF8.self)
        }
        guard let id = text(), bytes.count - i >= 8 else { return nil }
        var t: UInt64 = 0
        for k in 0..<8 { t = t << 8 | UInt64(bytes[i + k]) }
        i += 8
        guard let channel = text(), let event = text() else { return nil }
        return BroadcasterMessage(id: id, channel: channel, event: event, payload: Array(UnsafeRawBufferPointer(rebasing: bytes[i...])),
                                  createTimeNanoseconds: Int64(bitPattern: t), offset: offset, epoch: epoch)
    }

    /// The channel's log as Redis holds it (the single-node rules then answer a recovery).
    static func log(_ stream: ClusterStream, limits: BroadcasterHistoryLimits) -> BroadcasterChannelLog? {
        guard stream.lastOffset <= UInt64(Int.max) else { return nil }
        var history: [BroadcasterMessage] = []
        history.reserveCapacity(stream.history.count)
        for entry in stream.history {
            guard let m = entry.payload.withUnsafeBytes({ decode($0, at: entry.position) }) else { return nil }
            history.append(m)
        }
        return BroadcasterChannelLog(epoch: String(stream.epoch), lastOffset: Int(stream.lastOffset), history: history, limits: limits)
    }
}

extension BroadcasterShardHandler: ClusterChannelReceiver {
    private func ttlMilliseconds(_ limits: BroadcasterHistoryLimits) -> Int {
        limits.maxAgeMilliseconds > 0 ? limits.maxAgeMilliseconds : context.broker.configuration.cluster.historyTTLMilliseconds
    }

    /// `submit` in a cluster: Redis orders the message; `completion` runs on this shard.
    func submitInCluster(_ publish: BroadcasterPublish,
                         completion: (@Sendable (Result<BroadcasterMessage, BroadcasterError>) -> Void)?) -> BroadcasterMessage? {
        let draft = BroadcasterMessage(id: BroadcasterMessage.randomID(), channel: publish.channel, event: publish.event,
                                       payload: publish.payload, createTimeNanoseconds: shared.now(), offset: 0, epoch: "")
        let limits = BroadcasterHistoryRule.limits(for: publish.channel, in: options.history)
        // As `BroadcasterChannelLog.append`: a message over the byte budget is not kept, and
        // empties the history.
        let keep = !limits.isOff && draft.payload.count <= limits.maxBytes ? limits.maxMessages : 0
        let sent = context.clusterPublish(BroadcasterClusterWire.channel(publish.channel), BroadcasterClusterWire.body(draft),
                                          history: ClusterHistoryLimits(messages: keep, ttlMilliseconds: ttlMilliseconds(limits))) { position in
            guard let position, position.offset <= UInt64(Int.max) else {
                completion?(.failure(BroadcasterError(.internal, "the cluster could not order the message, try again")))
                return
            }
            var ordered = draft
            ordered.offset = Int(position.offset)
            ordered.epoch = String(position.epoch)
            completion?(.success(ordered))
        }
        return sent ? draft : nil
    }

    /// A subscribe in a cluster (the subscription registered, so the shard's interest asked
    /// first): one read of the stream from Redis, on the connection that carries the shard's
    /// subscription, answered on this shard. With `since`, the recovery; without, only the
    /// stream's last offset: the subscribe is answered once Redis has the subscription, so every
    /// message ordered after the answer arrives (those up to that offset, received meanwhile,
    /// came before it and are dropped). False when refused at once (the caller undoes the
    /// subscription).
    func recoverInCluster(_ socketId: SocketID, _ id: Int, _ channel: String, _ since: BroadcasterRecoveryPosition?, generation: Int,
                          failed: @escaping () -> Void) -> Bool {
        let limits = BroadcasterHistoryRule.limits(for: channel, in: options.history)
        return context.clusterReadStream(BroadcasterClusterWire.channel(channel), ttlMilliseconds: ttlMilliseconds(limits)) { [weak self] stream in
            guard let self else { return }
            guard let stream, var log = BroadcasterClusterWire.log(stream, limits: limits) else { return failed() }
            guard let since else {
                return finishRecovery(socketId, channel, generation, id, (.notRecovered(lastOffset: log.lastOffset), log.epoch), asked: false)
            }
            let recovery = log.recover(since: since, nowNanoseconds: shared.now())
            finishRecovery(socketId, channel, generation, id, (recovery, log.epoch))
        }
    }

    /// A message of a channel this shard is interested in: to its subscribers here.
    package func receiveClusterChannelMessage(_ channel: ClusterChannel, _ payload: UnsafeRawBufferPointer, position: ClusterPosition) -> Bool {
        guard channel.space == Self.clusterSpace else { return false }
        guard let message = BroadcasterClusterWire.decode(payload, at: position), message.channel.utf8.elementsEqual(channel.name) else {
            metrics.forwardsRefused.increment()
            return true
        }
        fanOut(message)
        return true
    }

    private static let clusterSpace = BroadcasterClusterWire.channel("").space

    /// The first subscriber of `channel` on this shard arrived (`true`) or its last left: the
    /// shard follows the channel in Redis only meanwhile. Nothing on a single node.
    func clusterInterest(_ channel: String, _ interested: Bool) {
        guard context.clusterNodeID != nil else { return }
        context.clusterInterest(BroadcasterClusterWire.channel(channel), interested)
    }
}
