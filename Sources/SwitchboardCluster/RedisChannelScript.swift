import SwitchboardRESP

/// The one Lua script a cluster publish runs: it gives the message its channel's next offset,
/// appends it to the channel's bounded history and publishes it, atomically (Redis runs a
/// script to its end before any other command), so every node sees one order and one offset.
///
/// Keys: `KEYS[1]` the channel's meta hash (`epoch`, `offset`), `KEYS[2]` its history list.
/// Arguments: `ARGV[1]` the pub/sub channel, `ARGV[2]` an epoch candidate (a random 64-bit
/// number in decimal, used only when the stream has none: it is new, or Redis lost it),
/// `ARGV[3]` the history length (0: none, and what was kept is dropped: a message not kept
/// leaves a hole no later recovery may skip), `ARGV[4]` the TTL of both keys in milliseconds,
/// `ARGV[5]` the message (kind byte, payload).
///
/// The published (and stored) message is `<epoch>:<offset>:<kind><payload>`, epoch and offset
/// in decimal; the script returns `{epoch, offset}`. The epoch stays a string: Lua numbers are
/// doubles and would round a 64-bit epoch.
enum RedisChannelScript {
    /// The script for `PUBLISH` (one Redis) or `SPUBLISH` (Redis Cluster: sharded pub/sub,
    /// allowed in scripts since Redis 7.0; its channel shares the keys' hash tag, so one slot).
    static func source(publishCommand: String) -> String { """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
          epoch = ARGV[2]
          redis.call('HSET', KEYS[1], 'epoch', epoch)
          redis.call('DEL', KEYS[2])
        end
        local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
        local framed = epoch .. ':' .. string.format('%d', offset) .. ':' .. ARGV[5]
        local size = tonumber(ARGV[3])
        if size > 0 then
          redis.call('RPUSH', KEYS[2], framed)
          redis.call('LTRIM', KEYS[2], -size, -1)
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
        else
          redis.call('DEL', KEYS[2])
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        redis.call('\(publishCommand)', ARGV[1], framed)
        return {epoch, offset}
        """
    }

    /// Reads a channel's stream (`ClusterShardEngine.readStream`). Keys as the publish
    /// script's; `ARGV[1]` an epoch candidate (used, with offset 0, when the stream has none),
    /// `ARGV[2]` the TTL of a stream created here. Returns `{epoch, offset, {framed, ...}}`,
    /// the history oldest first, each entry as the publish script stored it.
    static let read = """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
          epoch = ARGV[1]
          redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          redis.call('DEL', KEYS[2])
        end
        local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
        return {epoch, offset, redis.call('LRANGE', KEYS[2], 0, -1)}
        """

    /// `read`'s answer taken apart; nil when it is not one (an error reply, a malformed entry).
    static func stream(_ value: RESPValue) -> ClusterStream? {
        guard case .array(let items) = value, items.count == 3, case .bulkString(let epochText) = items[0],
              let epoch = UInt64(String(decoding: epochText, as: UTF8.self)), case .integer(let last) = items[1], last >= 0,
              case .array(let stored) = items[2] else { return nil }
        var history: [ClusterStream.Entry] = []
        history.reserveCapacity(stored.count)
        for value in stored {
            guard case .bulkString(let framed) = value, let (position, kind, start) = decode(framed) else { return nil }
            history.append(ClusterStream.Entry(position: position, kind: kind, payload: Array(framed[start...])))
        }
        return ClusterStream(epoch: epoch, lastOffset: UInt64(last), history: history)
    }

    /// Recovery: what a subscriber that last saw `ARGV[1]` (an offset) missed. Keys as the
    /// publish script's (meta hash, history list). Returns `{epoch, last, entries}`: `epoch`
    /// the stream's (empty string: Redis has none), `last` its last offset, and `entries` the
    /// stored messages after `ARGV[1]` (`LRANGE` of the list's tail, as published:
    /// `<epoch>:<offset>:<kind><payload>`), or `-1` when more than `ARGV[2]` were missed (none
    /// are read then). Read-only, one atomic step: the answer is one instant of the stream.
    /// Not `read`: a broker channel's gap read must not create a stream (a missing one is a
    /// lost epoch) and reads only the tail it missed, bounded by `cluster_recovery_max_messages`.
    static let history = """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then return {'', 0, {}} end
        local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
        local missed = last - tonumber(ARGV[1])
        if missed <= 0 then return {epoch, last, {}} end
        if missed > tonumber(ARGV[2]) then return {epoch, last, -1} end
        return {epoch, last, redis.call('LRANGE', KEYS[2], -missed, -1)}
        """

    /// Membership, one round trip per heartbeat of each node. Keys: `KEYS[1]` a sorted set
    /// (member: node id, score: expiry on Redis's own clock, so nodes' clocks never disagree),
    /// `KEYS[2]` a hash node -> incarnation (a random number each process start picks, so a
    /// node restarted within its TTL is still seen as a new one), `KEYS[3]` a hash node ->
    /// the incarnation last declared dead. Arguments: `ARGV[1]` this node, `ARGV[2]` its
    /// incarnation, `ARGV[3]` its TTL in milliseconds.
    ///
    /// The start both membership scripts share, so they never disagree on who expired: `now`
    /// from Redis's clock, every member past its deadline recorded as declared dead (with its
    /// incarnation) and removed. Keys: members (sorted by deadline), incarnations, declared dead.
    private static let sweepExpiredMembers = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
        for _, node in ipairs(expired) do
          local incarnation = redis.call('HGET', KEYS[2], node)
          if incarnation then redis.call('HSET', KEYS[3], node, incarnation) end
          redis.call('HDEL', KEYS[2], node)
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)

        """

    /// Sweeps the expired members (recording each as declared dead, so the node itself learns
    /// it if it was only paused or cut off), tells whether this very incarnation was declared
    /// dead (`1`), renews it, and returns `{declared, {node, incarnation, ...}}` of the live
    /// members. Redis that lost its data (restarted empty) has no record: nobody is declared
    /// dead by the script then; the nodes' own grace period covers that case.
    static let heartbeat = sweepExpiredMembers + """
        local declared = 0
        if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then declared = 1 end
        redis.call('HDEL', KEYS[3], ARGV[1])
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return {declared, redis.call('HGETALL', KEYS[2])}
        """

    /// A graceful stop: node `ARGV[1]` leaves the membership at once instead of expiring. Only
    /// while it is still the incarnation `ARGV[2]` (a node the others declared dead, or one
    /// already restarted as a new process, is not removed again): removes it from the members
    /// and incarnations, then announces the departure `ARGV[4]` on the all-nodes inbox `ARGV[3]`
    /// (with `publishCommand`; in Redis Cluster mode the inbox shares the keys' `{nodes}` tag,
    /// so one slot), so the others report the death at once. Keys as `heartbeat`'s (the third
    /// is unused: no death is recorded for a node that said goodbye). Returns 1 when it left.
    static func leave(publishCommand: String) -> String { """
        if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[1])
        redis.call('\(publishCommand)', ARGV[3], ARGV[4])
        return 1
        """
    }

    /// The departure a `leave` announces on the all-nodes inbox: `L<node>:<incarnation>` in
    /// decimal. Its first byte is no addressed operation of the broker's (`t`, `b`, `c`, `k`,
    /// `p`, `x`), so the engine that receives the inbox takes it before anyone else reads it.
    static let leaveOperation = UInt8(ascii: "L")

    static func encodeLeave(node: Int, incarnation: UInt64) -> [UInt8] {
        [leaveOperation] + Array("\(node):\(incarnation)".utf8)
    }

    /// A departure taken apart; nil when the bytes are not one.
    static func decodeLeave(_ bytes: UnsafeRawBufferPointer) -> (node: Int, incarnation: UInt64)? {
        guard bytes.first == leaveOperation else { return nil }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes.dropFirst()), as: UTF8.self)
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let node = Int(parts[0]), ClusterConfiguration.nodeIDs.contains(node), let incarnation = UInt64(parts[1]) else { return nil }
        return (node, incarnation)
    }

    /// Drops expired members and returns the live ones (expired ones are recorded as declared
    /// dead, as the heartbeat does, so the two never disagree). Keys as `heartbeat`'s.
    static let members = sweepExpiredMembers + """
        return redis.call('ZRANGE', KEYS[1], 0, -1)
        """

    /// The history script's answer, checked against the position it was read after: the
    /// messages must carry that epoch and follow it with consecutive offsets up to the last.
    static func decodeHistory(_ value: RESPValue, after position: ClusterPosition) -> ClusterHistoryRead? {
        guard case .array(let answer) = value, answer.count == 3, case .bulkString(let epochText) = answer[0],
              case .integer(let last) = answer[1], last >= 0 else { return nil }
        guard let epoch = UInt64(String(decoding: epochText, as: UTF8.self)), epoch == position.epoch else {
            return .lost(.epochChanged)
        }
        if case .integer(-1) = answer[2] { return .lost(.overLimit) }
        guard case .array(let items) = answer[2] else { return nil }
        // Fewer than missed (the list was trimmed), or not the offsets that follow: lost.
        guard UInt64(last) >= position.offset, items.count == Int(UInt64(last) - position.offset) else { return .lost(.trimmed) }
        var entries: [ClusterHistoryEntry] = []
        entries.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .bulkString(let framed) = item, let (at, kind, start) = decode(framed) else { return nil }
            guard at.epoch == epoch, at.offset == position.offset + UInt64(i) + 1 else { return .lost(.trimmed) }
            entries.append(ClusterHistoryEntry(position: at, kind: kind, payload: Array(framed[start...])))
        }
        return .messages(entries)
    }

    /// A published message taken apart; nil when it is not one this script wrote.
    static func decode(_ framed: [UInt8]) -> (position: ClusterPosition, kind: ClusterMessageKind, payloadStart: Int)? {
        var i = 0
        func number() -> UInt64? {
            var value: UInt64 = 0
            let start = i
            while i < framed.count, framed[i] >= 0x30, framed[i] <= 0x39 {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(framed[i] - 0x30))
                guard !o1, !o2 else { return nil }
                value = a
                i += 1
            }
            guard i > start, i < framed.count, framed[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            return value
        }
        guard let epoch = number(), let offset = number(), i < framed.count,
              let kind = ClusterMessageKind(rawValue: framed[i]) else { return nil }
        return (ClusterPosition(epoch: epoch, offset: offset), kind, i + 1)
    }
}
