import Switchboard
import SwitchboardRESP

// # The broadcaster across nodes (issue 13)
//
// On one node a channel's owner shard orders its messages (offset, epoch) and keeps its
// history. With `cluster_engine = redis` Redis is the owner, for every node:
//
// - publish (WebSocket or REST, on any node and shard): one Lua script on the publishing
//   shard's Redis connection assigns the channel's next offset (its epoch is created when
//   Redis has none: a new channel, or a stream Redis lost), appends the message to the
//   channel's history list (trimmed to the channel's `maxMessages`; emptied when the message is
//   not kept, as on one node) and publishes it to every node's inbox. The publisher's answer
//   carries the offset and epoch from the script.
// - fan-out: each node's shard 0 receives the message and posts it to every shard, which
//   delivers it to its subscribers. Redis runs scripts one at a time and a node reads its inbox
//   on one connection, so every node delivers a channel's messages in offset order, with the
//   same offsets and epoch.
// - recovery (`subscribe` with `since`, on any node): one script reads the channel's epoch,
//   last offset and history; the answer is computed here with the single-node rules (same
//   epoch, the history reaching back to `since + 1`, age and byte limits), so a client that
//   reconnects to another node recovers, or learns `recovered: false` when the epoch changed
//   (Redis lost the stream, or it expired) or the history no longer covers its offset.
//   Live messages that arrive meanwhile are held back and merged by offset, as on one node.
//
// Keys: `P:{bc:CHANNEL}:meta` (hash: epoch, offset) and `P:{bc:CHANNEL}:history` (list of
// `offset:epoch:message`), one hash tag per channel (one Redis Cluster slot per channel).
// Bounds: the history holds at most the channel's `maxMessages`; both keys expire
// `maxAgeMilliseconds` after the last publish (or `cluster_history_ttl_ms` when the channel has
// no age limit), after which the next publish starts a new epoch.
//
// Not interest-routed: every node receives every broadcaster message (one inbox publish per
// message, whatever the subscribers); channels whose subscribers are on few of many nodes pay
// for the others. Fail-fast: with Redis unreachable a publish or a recovering subscribe fails
// at once ("the channel's owner is overloaded, try again"; a publish is counted in the
// broadcaster's `publishes_refused_total`).

/// A broadcaster message as the cluster carries and stores it: `offset:epoch:` then the
/// message (id, create time, channel, event, each length-prefixed, then the payload).
enum BroadcasterClusterWire {
    /// The message without its position (the script prepends `offset:epoch:`).
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

    /// `offset:epoch:body`; nil for anything malformed.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> BroadcasterMessage? {
        var i = 0
        var offset = 0
        while i < bytes.count, bytes[i] != UInt8(ascii: ":") {
            guard (0x30...0x39).contains(bytes[i]), offset < Int.max / 10 - 9 else { return nil }
            offset = offset * 10 + Int(bytes[i] - 0x30)
            i += 1
        }
        guard i > 0, i < bytes.count else { return nil }
        i += 1
        let epochStart = i
        while i < bytes.count, bytes[i] != UInt8(ascii: ":") { i += 1 }
        guard i < bytes.count, i - epochStart <= 64 else { return nil }
        let epoch = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[epochStart..<i]), as: UTF8.self)
        i += 1
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

    /// The single-node recovery rules applied to what Redis holds: the history (oldest first,
    /// contiguous offsets ending at `lastOffset`, or empty).
    static func recovery(epoch: String, lastOffset: Int, history: [BroadcasterMessage], since: BroadcasterRecoveryPosition,
                         limits: BroadcasterHistoryLimits, nowNanoseconds: Int64) -> BroadcasterRecovery {
        guard since.epoch == epoch, since.offset <= lastOffset else { return .notRecovered(lastOffset: lastOffset) }
        if since.offset == lastOffset { return .recovered([], lastOffset: lastOffset) }
        var kept = ArraySlice(history)
        // The same trims as `BroadcasterChannelLog.trim`: count, bytes, age, oldest first.
        let oldestAllowed = limits.maxAgeMilliseconds > 0 ? nowNanoseconds - Int64(limits.maxAgeMilliseconds) * 1_000_000 : Int64.min
        var bytes = kept.reduce(0) { $0 + $1.payload.count }
        while let first = kept.first, kept.count > limits.maxMessages || bytes > limits.maxBytes || first.createTimeNanoseconds < oldestAllowed {
            bytes -= first.payload.count
            kept = kept.dropFirst()
        }
        guard let oldest = kept.first, oldest.offset <= since.offset + 1, kept.last?.offset == lastOffset else {
            return .notRecovered(lastOffset: lastOffset)
        }
        return .recovered(Array(kept.drop { $0.offset <= since.offset }), lastOffset: lastOffset)
    }
}

enum BroadcasterClusterScripts {
    /// KEYS: meta, history. ARGV: epoch candidate, messages to keep (0: none), TTL ms, body,
    /// the all-nodes inbox, the inbox prefix. {offset, epoch}.
    static let publish = """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
            epoch = ARGV[1]
            redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
            redis.call('DEL', KEYS[2])
        end
        local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
        local framed = offset .. ':' .. epoch .. ':' .. ARGV[4]
        local keep = tonumber(ARGV[2])
        if keep > 0 then
            redis.call('RPUSH', KEYS[2], framed)
            redis.call('LTRIM', KEYS[2], -keep, -1)
            redis.call('PEXPIRE', KEYS[2], ARGV[3])
        else
            redis.call('DEL', KEYS[2])
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        redis.call('PUBLISH', ARGV[5], ARGV[6] .. framed)
        return {offset, epoch}
        """
    /// KEYS: meta, history. ARGV: epoch candidate, TTL ms. {epoch, last offset, {history...}}.
    /// A channel Redis does not know gets its epoch now (offset 0), so the next publish keeps it.
    static let recover = """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
            epoch = ARGV[1]
            redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            redis.call('DEL', KEYS[2])
        end
        local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
        return {epoch, offset, redis.call('LRANGE', KEYS[2], 0, -1)}
        """
}

/// The protocol tag of broadcaster messages in the all-nodes inbox.
let broadcasterClusterTag = UInt8(ascii: "C")

extension BroadcasterShardHandler: ClusterMessageReceiver {
    private var clusterKeyPrefix: String { context.broker.configuration.cluster.keyPrefix }

    private func keys(_ channel: String) -> [[UInt8]] {
        [Array("\(clusterKeyPrefix):{bc:\(channel)}:meta".utf8), Array("\(clusterKeyPrefix):{bc:\(channel)}:history".utf8)]
    }

    private func ttlMilliseconds(_ limits: BroadcasterHistoryLimits) -> Int {
        limits.maxAgeMilliseconds > 0 ? limits.maxAgeMilliseconds : context.broker.configuration.cluster.historyTTLMilliseconds
    }

    /// Runs `command`; false when refused at once (Redis unreachable), `answer` then never runs.
    private func command(_ command: [[UInt8]], _ answer: @escaping (RESPValue?) -> Void) -> Bool {
        var returned = false
        var refusedAtOnce = false
        context.clusterCommand(command) { reply in
            // The engine answers nil inside the call when it cannot send: a refusal.
            guard returned else { refusedAtOnce = true; return }
            answer(reply)
        }
        returned = true
        return !refusedAtOnce
    }

    private static func eval(_ script: String, keys: [[UInt8]], _ arguments: [[UInt8]]) -> [[UInt8]] {
        [Array("EVAL".utf8), Array(script.utf8), Array(String(keys.count).utf8)] + keys + arguments
    }

    /// `submit` in a cluster: Redis orders the message; `completion` runs on this shard.
    func submitInCluster(_ publish: BroadcasterPublish,
                         completion: (@Sendable (Result<BroadcasterMessage, BroadcasterError>) -> Void)?) -> BroadcasterMessage? {
        let draft = BroadcasterMessage(id: BroadcasterMessage.randomID(), channel: publish.channel, event: publish.event,
                                       payload: publish.payload, createTimeNanoseconds: shared.now(), offset: 0, epoch: "")
        let limits = BroadcasterHistoryRule.limits(for: publish.channel, in: options.history)
        let keep = !limits.isOff && draft.payload.count <= limits.maxBytes ? limits.maxMessages : 0
        let all = Array("\(clusterKeyPrefix):node:all".utf8)  // RedisShardEngine's all-nodes inbox
        let sent = command(Self.eval(BroadcasterClusterScripts.publish, keys: keys(publish.channel), [
            Array(BroadcasterMessage.randomID().utf8), Array(String(keep).utf8), Array(String(ttlMilliseconds(limits)).utf8),
            BroadcasterClusterWire.body(draft), all, [UInt8(ascii: "x"), broadcasterClusterTag],
        ])) { reply in
            guard case .array(let items)? = reply, items.count == 2, case .integer(let offset) = items[0],
                  case .bulkString(let epoch) = items[1] else {
                completion?(.failure(BroadcasterError(.internal, "the cluster could not order the message, try again")))
                return
            }
            var ordered = draft
            ordered.offset = Int(offset)
            ordered.epoch = String(decoding: epoch, as: UTF8.self)
            completion?(.success(ordered))
        }
        return sent ? draft : nil
    }

    /// The recovery of a `since` subscribe in a cluster: read from Redis, answered on this
    /// shard. False when refused at once (the caller undoes the subscription).
    func recoverInCluster(_ socketId: SocketID, _ id: Int, _ channel: String, _ since: BroadcasterRecoveryPosition, generation: Int,
                          failed: @escaping () -> Void) -> Bool {
        let limits = BroadcasterHistoryRule.limits(for: channel, in: options.history)
        return command(Self.eval(BroadcasterClusterScripts.recover, keys: keys(channel), [
            Array(BroadcasterMessage.randomID().utf8), Array(String(ttlMilliseconds(limits)).utf8),
        ])) { [weak self] reply in
            guard let self else { return }
            guard case .array(let items)? = reply, items.count == 3, case .bulkString(let epochBytes) = items[0],
                  case .integer(let lastOffset) = items[1], case .array(let stored) = items[2] else {
                return failed()
            }
            let history = stored.compactMap { value -> BroadcasterMessage? in
                guard case .bulkString(let b) = value else { return nil }
                return b.withUnsafeBytes { BroadcasterClusterWire.decode($0) }
            }
            let epoch = String(decoding: epochBytes, as: UTF8.self)
            let recovery = BroadcasterClusterWire.recovery(epoch: epoch, lastOffset: Int(lastOffset), history: history, since: since,
                                                           limits: limits, nowNanoseconds: shared.now())
            finishRecovery(socketId, channel, generation, id, (recovery, epoch))
        }
    }

    package func receiveClusterMessage(tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard tag == broadcasterClusterTag else { return false }
        guard let message = BroadcasterClusterWire.decode(bytes) else {
            metrics.forwardsRefused.increment()
            return true
        }
        let shared = self.shared
        for shard in 0..<context.shardCount {
            if shard == context.shardIndex {
                fanOut(message)
            } else if context.broker.execute(onShard: shard, { shared.handlers[$0]?.fanOut(message) }) != .queued {
                metrics.forwardsRefused.increment()
            }
        }
        return true
    }
}
