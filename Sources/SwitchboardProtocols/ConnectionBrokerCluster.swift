import Switchboard
import SwitchboardRESP

// # The connection broker across nodes (issue 13)
//
// With `cluster_engine = redis` several Switchboard nodes act as one connection broker. The
// single-node design (ConnectionRegistry.swift) carries over: every record keeps exactly one
// owner, and only the transport between owners changes.
//
// | state                          | owner                         | across nodes |
// |--------------------------------|-------------------------------|--------------|
// | connection `c`, its ends       | its socket's node and shard   | ids carry the node (top byte of the UUID) and the shard (`low % N`) |
// | role `r`'s members, in order   | Redis: one sorted set per role | a Lua script per register / list / remove |
// | channel `x` between `a` and `b`| a's end on home(a), b's on home(b) | `open`/`message`/`close`/disconnect are node-inbox messages (`ConnectionBrokerRemote`) |
//
// ## Why roles live in Redis (and not on an owner node)
//
// A role spans nodes, and its order must be one order. An owner node picked by hash would
// lose its roles when it dies and need a hand-over when nodes come and go; Redis already
// orders every command, survives any one Switchboard node, and checks
// `max_connections_per_role` atomically for the whole cluster inside one script. The cost is
// one Redis round trip per `register`, `list_by_role` and disconnect (the single-node path
// posts to another shard for the same three).
//
// Keys (one hash tag, `{cb}`, so every script's keys are in one Redis Cluster slot):
// - `P:{cb}:role:ROLE`: sorted set, member = connection id, score = `P:{cb}:seq` at register
//   (INCR: registration order is the order Redis ran the registers, which follows real time).
// - `P:{cb}:owned:N`: hash of node N's registrations, field `id + role`, value the incarnation
//   of node N that wrote it (`ShardContext.clusterIncarnation`), so the cluster removes a dead
//   node's members (`ConnectionBroker.nodeDied`) without scanning roles, and only those the
//   dead incarnation wrote: a clean-up that runs late (a node learns of the death after the
//   node restarted and registered again, or after it heard of its own death and wrote its
//   members back) leaves the new incarnation's members alone.
// - `P:{cb}:node:N`: what a build before the incarnation tags kept instead (a set of `id +
//   role`). Never written; the clean-up script removes its members and deletes it
//   (`ConnectionBrokerRoleScripts.nodeDied`), so a rolling upgrade leaves nothing behind.
//
// Bounds: a role holds at most `max_connections_per_role` members (checked in the script);
// the sets hold one entry per registered connection of the cluster; `list_by_role` reads
// `max_list_results` entries (ZRANGE 0 k-1: O(log n + k)). Nothing expires by itself: entries
// leave at disconnect, or all of a node's at once when that node is declared dead.
//
// ## Ordering across nodes, and why it holds
//
// Every node message is published by the sending shard on its own Redis connection and read
// by the receiving node's shard 0 on one connection, which posts it to the destination shard.
// So messages from one shard to one shard of another node arrive in send order (FIFO hop by
// hop: connection, Redis's per-publisher order, one subscriber connection, the shard inbox).
// The single-node arguments rest only on FIFO between two homes, so they carry over:
// replies in request order; per channel and direction, send order; `incoming_channel` before
// any `channel_message`; `channel_closed_notification` after the closer's earlier messages.
// A disconnect is visible to whoever saw its notification: the notifications leave only once
// Redis answered the role removal (a later `list_by_role`, on any connection, runs after it).
//
// ## Failures (fail fast, counted)
//
// - Redis unreachable: `register`/`list_by_role` fail with "Server busy", first hops of
//   `open`/`message`/`close` with "Delivery failed" (`cb_cluster_unavailable_total`).
// - An answer or clean-up that cannot be sent (Redis down) or posted on arrival (the
//   destination shard's inbox full) is lost and counted (`cb_cross_node_lost_total`); the
//   single-node outbox is not used across nodes (an outage would make it unbounded).
// - A node declared dead (`ConnectionBroker.nodeDied`): every end whose peer lived there is
//   closed with `channel_closed_notification`, requests waiting for its answer fail
//   ("Delivery failed"), and the role members its dead incarnation wrote are removed in Redis.
//   The node itself, told the others declared it dead while it lived, removes what its old
//   incarnation wrote and writes every member it holds back under the new one; each script is
//   atomic and each entry carries its writer, so the order in which these reach Redis does
//   not matter.

/// A connection-broker message between nodes: the cross-shard posts of
/// `ConnectionBrokerHandler` that cross a node, as data. Encoded as one operation byte, then
/// fixed-width big-endian fields (ids 16 bytes, sockets and tickets 8) and length-prefixed
/// (4 bytes) texts.
enum ConnectionBrokerRemote {
    enum ProbeQuery: UInt8 { case target = 0, channel = 1 }

    /// To the target's home: accept a channel from `opener` (answer: `openAnswered`).
    case accept(target: UUID4, opener: UUID4, openerSocket: SocketID, ticket: UInt64)
    case openAnswered(socket: SocketID, ticket: UInt64, me: UUID4, target: UUID4, answer: ConnectionBrokerHandler.OpenAnswer)
    /// To `party`'s home: a channel message (strict profile: no answer).
    case deliver(channel: UUID4, sender: UUID4, party: UUID4, text: String)
    /// To `party`'s home: a channel message whose sender waits (reference profile).
    case deliverReporting(channel: UUID4, sender: UUID4, party: UUID4, text: String, replySocket: SocketID, ticket: UInt64, payloadBytes: Int)
    case peerClosed(channel: UUID4, closer: UUID4, party: UUID4)
    case peerClosedReporting(channel: UUID4, closer: UUID4, party: UUID4, replySocket: SocketID, ticket: UInt64)
    case routedAnswered(socket: SocketID, ticket: UInt64, delivery: ConnectionBrokerHandler.Delivery, payloadBytes: Int)
    /// To the parties' home (all ends of one home): `gone` disconnected.
    case peersGone(gone: UUID4, ends: [(channel: UUID4, party: UUID4)])
    case probe(query: ProbeQuery, id: UUID4, replySocket: SocketID, ticket: UInt64)
    case probeAnswered(socket: SocketID, ticket: UInt64, found: Bool)

    /// The shard of the receiving node that handles it.
    func destinationShard(shardCount: Int) -> Int? {
        switch self {
        case .accept(let target, _, _, _): return target.home(shardCount: shardCount)
        case .openAnswered(let socket, _, _, _, _), .routedAnswered(let socket, _, _, _), .probeAnswered(let socket, _, _):
            return socket.shard < shardCount ? socket.shard : nil
        case .deliver(_, _, let party, _), .deliverReporting(_, _, let party, _, _, _, _), .peerClosed(_, _, let party),
             .peerClosedReporting(_, _, let party, _, _):
            return party.home(shardCount: shardCount)
        case .peersGone(_, let ends): return ends.first.map { $0.party.home(shardCount: shardCount) }
        case .probe(_, let id, _, _): return id.home(shardCount: shardCount)
        }
    }

    // MARK: Wire

    func encode() -> [UInt8] {
        var w = Writer()
        switch self {
        case .accept(let target, let opener, let openerSocket, let ticket):
            w.byte(1); w.id(target); w.id(opener); w.u64(openerSocket.rawValue); w.u64(ticket)
        case .openAnswered(let socket, let ticket, let me, let target, let answer):
            w.byte(2); w.u64(socket.rawValue); w.u64(ticket); w.id(me); w.id(target)
            switch answer {
            case .opened(let channel, let targetSocket): w.byte(0); w.id(channel); w.u64(targetSocket.rawValue)
            case .targetNotFound: w.byte(1)
            case .targetTooMany: w.byte(2)
            case .deliveryFailed: w.byte(3)
            }
        case .deliver(let channel, let sender, let party, let text):
            w.byte(3); w.id(channel); w.id(sender); w.id(party); w.text(text)
        case .deliverReporting(let channel, let sender, let party, let text, let replySocket, let ticket, let payloadBytes):
            w.byte(4); w.id(channel); w.id(sender); w.id(party); w.text(text); w.u64(replySocket.rawValue); w.u64(ticket); w.u64(UInt64(payloadBytes))
        case .peerClosed(let channel, let closer, let party):
            w.byte(5); w.id(channel); w.id(closer); w.id(party)
        case .peerClosedReporting(let channel, let closer, let party, let replySocket, let ticket):
            w.byte(6); w.id(channel); w.id(closer); w.id(party); w.u64(replySocket.rawValue); w.u64(ticket)
        case .routedAnswered(let socket, let ticket, let delivery, let payloadBytes):
            w.byte(7); w.u64(socket.rawValue); w.u64(ticket)
            w.byte(delivery == .delivered ? 0 : delivery == .gone ? 1 : 2); w.u64(UInt64(payloadBytes))
        case .peersGone(let gone, let ends):
            w.byte(8); w.id(gone); w.u64(UInt64(ends.count))
            for (channel, party) in ends { w.id(channel); w.id(party) }
        case .probe(let query, let id, let replySocket, let ticket):
            w.byte(9); w.byte(query.rawValue); w.id(id); w.u64(replySocket.rawValue); w.u64(ticket)
        case .probeAnswered(let socket, let ticket, let found):
            w.byte(10); w.u64(socket.rawValue); w.u64(ticket); w.byte(found ? 1 : 0)
        }
        return w.bytes
    }

    /// nil for anything malformed (counted by the caller, never trusted).
    static func decode(_ bytes: UnsafeRawBufferPointer) -> ConnectionBrokerRemote? {
        var r = Reader(bytes: bytes)
        guard let op = r.byte() else { return nil }
        let message: ConnectionBrokerRemote?
        switch op {
        case 1:
            guard let t = r.id(), let o = r.id(), let s = r.u64(), let k = r.u64() else { return nil }
            message = .accept(target: t, opener: o, openerSocket: SocketID(rawValue: s), ticket: k)
        case 2:
            guard let s = r.u64(), let k = r.u64(), let me = r.id(), let t = r.id(), let a = r.byte() else { return nil }
            let answer: ConnectionBrokerHandler.OpenAnswer
            switch a {
            case 0:
                guard let c = r.id(), let ts = r.u64() else { return nil }
                answer = .opened(c, targetSocket: SocketID(rawValue: ts))
            case 1: answer = .targetNotFound
            case 2: answer = .targetTooMany
            case 3: answer = .deliveryFailed
            default: return nil
            }
            message = .openAnswered(socket: SocketID(rawValue: s), ticket: k, me: me, target: t, answer: answer)
        case 3:
            guard let c = r.id(), let s = r.id(), let p = r.id(), let text = r.text() else { return nil }
            message = .deliver(channel: c, sender: s, party: p, text: text)
        case 4:
            guard let c = r.id(), let s = r.id(), let p = r.id(), let text = r.text(), let rs = r.u64(), let k = r.u64(),
                  let n = r.u64(), n <= UInt64(Int.max) else { return nil }
            message = .deliverReporting(channel: c, sender: s, party: p, text: text, replySocket: SocketID(rawValue: rs), ticket: k, payloadBytes: Int(n))
        case 5:
            guard let c = r.id(), let s = r.id(), let p = r.id() else { return nil }
            message = .peerClosed(channel: c, closer: s, party: p)
        case 6:
            guard let c = r.id(), let s = r.id(), let p = r.id(), let rs = r.u64(), let k = r.u64() else { return nil }
            message = .peerClosedReporting(channel: c, closer: s, party: p, replySocket: SocketID(rawValue: rs), ticket: k)
        case 7:
            guard let s = r.u64(), let k = r.u64(), let d = r.byte(), d <= 2, let n = r.u64(), n <= UInt64(Int.max) else { return nil }
            let delivery: ConnectionBrokerHandler.Delivery = d == 0 ? .delivered : d == 1 ? .gone : .refused
            message = .routedAnswered(socket: SocketID(rawValue: s), ticket: k, delivery: delivery, payloadBytes: Int(n))
        case 8:
            // Each end takes 32 bytes: a count the rest cannot hold is refused before any allocation.
            guard let g = r.id(), let n = r.u64(), n >= 1, n <= UInt64(r.remaining / 32) else { return nil }
            var ends: [(channel: UUID4, party: UUID4)] = []
            ends.reserveCapacity(Int(n))
            for _ in 0..<n {
                guard let c = r.id(), let p = r.id() else { return nil }
                ends.append((c, p))
            }
            message = .peersGone(gone: g, ends: ends)
        case 9:
            guard let q = r.byte().flatMap(ProbeQuery.init(rawValue:)), let id = r.id(), let rs = r.u64(), let k = r.u64() else { return nil }
            message = .probe(query: q, id: id, replySocket: SocketID(rawValue: rs), ticket: k)
        case 10:
            guard let s = r.u64(), let k = r.u64(), let f = r.byte(), f <= 1 else { return nil }
            message = .probeAnswered(socket: SocketID(rawValue: s), ticket: k, found: f == 1)
        default:
            return nil
        }
        return r.remaining == 0 ? message : nil
    }

    private struct Writer {
        var bytes: [UInt8] = []
        mutating func byte(_ b: UInt8) { bytes.append(b) }
        mutating func u64(_ v: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) } }
        mutating func id(_ u: UUID4) { u64(u.high); u64(u.low) }
        mutating func text(_ s: String) {
            let utf8 = Array(s.utf8)
            precondition(utf8.count <= Int(UInt32.max), "a text over 4 GiB")
            for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: utf8.count >> shift)) }
            bytes += utf8
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        var remaining: Int { bytes.count - offset }
        mutating func byte() -> UInt8? {
            guard remaining >= 1 else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }
        mutating func u64() -> UInt64? {
            guard remaining >= 8 else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
            offset += 8
            return v
        }
        mutating func id() -> UUID4? {
            guard let h = u64(), let l = u64() else { return nil }
            return UUID4(high: h, low: l)
        }
        mutating func text() -> String? {
            guard remaining >= 4 else { return nil }
            var n = 0
            for i in 0..<4 { n = n << 8 | Int(bytes[offset + i]) }
            guard remaining - 4 >= n else { return nil }
            defer { offset += 4 + n }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + n)]), as: UTF8.self)
        }
    }
}

/// The Lua scripts of the cluster-wide roles (see the top of this file for the keys).
enum ConnectionBrokerRoleScripts {
    /// KEYS: role set, sequence, node's owned hash. ARGV: id, max members, role, the writer's
    /// incarnation. The member's sequence number (its place in the role, >= 1) when admitted,
    /// 0 when the role is full.
    static let register = """
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
        local seq = redis.call('INCR', KEYS[2])
        redis.call('ZADD', KEYS[1], seq, ARGV[1])
        redis.call('HSET', KEYS[3], ARGV[1] .. ARGV[3], ARGV[4])
        return seq
        """
    /// KEYS: role set. ARGV: limit (>= 1). {size, {oldest ids...}}.
    static let list = """
        return {redis.call('ZCARD', KEYS[1]), redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)}
        """
    /// KEYS: role set, node's owned hash. ARGV: id, role.
    static let remove = """
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[1] .. ARGV[2])
        return 1
        """
    /// KEYS: role set, sequence, node's owned hash. ARGV: role, the writer's incarnation, then
    /// pairs of an id registered on the calling shard and the sequence number its register got
    /// (0: unknown). Each id the role lacks is added again at that sequence number, its place
    /// in the role (with none, after every member), and the counter is moved past it, so later
    /// registers come after (a Redis restarted empty starts it again at 0); the role's limit does
    /// not apply: they were admitted once. Every id is tagged with the incarnation (a clean-up
    /// of an older one leaves it). The number added.
    static let restore = """
        local added = 0
        for i = 3, #ARGV, 2 do
            if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
                local seq = tonumber(ARGV[i + 1])
                if seq > 0 then
                    if tonumber(redis.call('GET', KEYS[2]) or '0') < seq then redis.call('SET', KEYS[2], seq) end
                else
                    seq = redis.call('INCR', KEYS[2])
                end
                redis.call('ZADD', KEYS[1], seq, ARGV[i])
                added = added + 1
            end
            redis.call('HSET', KEYS[3], ARGV[i] .. ARGV[1], ARGV[2])
        end
        return added
        """
    /// KEYS: node's owned hash. ARGV: the role keys' prefix, then pairs of id and role. Removes
    /// each id from its role (removals sent again after Redis was away). The number of pairs.
    static let removeMany = """
        for i = 2, #ARGV, 2 do
            redis.call('ZREM', ARGV[1] .. ARGV[i + 1], ARGV[i])
            redis.call('HDEL', KEYS[1], ARGV[i] .. ARGV[i + 1])
        end
        return (#ARGV - 1) / 2
        """
    /// KEYS: node's owned hash, node's set of an older build. ARGV: the role keys' prefix, the
    /// incarnation that died (empty: every incarnation, for a death declared by hand), an
    /// incarnation to keep (empty: none; at a connect, the node's own: the members of its
    /// earlier processes go), the `HSCAN` cursor of this step ("0" for the first), the step's
    /// `COUNT` (`cluster_cleanup_batch_entries`). Removes every member that incarnation
    /// registered among the entries this step reads (ids are 36 bytes, the role follows).
    /// `{next cursor, removed}`: the caller runs steps until the cursor is "0"
    /// (`ClusterKeys.cleanUpInSteps`), so Redis serves others between them.
    ///
    /// The second key is what a build before the incarnation tags kept instead of the hash
    /// (`P:{cb}:node:N`, a set of `id + role` with no writer recorded); the first step takes it
    /// whole. An entry there that the hash does not hold is removed, as that build's own
    /// clean-up did, and the set is deleted: after a rolling upgrade, the members an old
    /// process of the node left go at the node's next death or at its first connect on the new
    /// build.
    static let nodeDied = """
        local scan = redis.call('HSCAN', KEYS[1], ARGV[4], 'COUNT', ARGV[5])
        local entries = scan[2]
        local removed = 0
        for i = 1, #entries, 2 do
            if (ARGV[2] == '' or entries[i + 1] == ARGV[2]) and entries[i + 1] ~= ARGV[3] then
                redis.call('ZREM', ARGV[1] .. string.sub(entries[i], 37), string.sub(entries[i], 1, 36))
                redis.call('HDEL', KEYS[1], entries[i])
                removed = removed + 1
            end
        end
        if ARGV[4] == '0' then
            for _, e in ipairs(redis.call('SMEMBERS', KEYS[2])) do
                if redis.call('HEXISTS', KEYS[1], e) == 0 then
                    removed = removed + redis.call('ZREM', ARGV[1] .. string.sub(e, 37), string.sub(e, 1, 36))
                end
            end
            redis.call('DEL', KEYS[2])
        end
        return {scan[1], removed}
        """
}

/// The Redis keys of the connection broker's roles under `cluster_key_prefix`.
struct ConnectionBrokerRoleKeys {
    private let keys: ClusterKeys
    /// `P:{cb}:role:` (the node-died script adds each role).
    let rolePrefix: [UInt8]
    let sequence: [UInt8]

    /// A clean-up step's `HSCAN COUNT` (`cluster_cleanup_batch_entries`).
    private let cleanUpBatchEntries: Int

    init(keyPrefix: String, cleanUpBatchEntries: Int) {
        keys = ClusterKeys(keyPrefix: keyPrefix, tag: "cb")
        self.cleanUpBatchEntries = cleanUpBatchEntries
        rolePrefix = keys.prefix("role")
        sequence = keys.key("seq")
    }

    func role(_ role: String) -> [UInt8] { keys.key("role", role) }
    /// `P:{cb}:owned:N`: node N's registrations, each with its writer's incarnation.
    func owned(_ node: Int) -> [UInt8] { keys.key("owned", String(node)) }
    /// `P:{cb}:node:N`: node N's registrations as a build before the incarnation tags kept them
    /// (a set of `id + role`); only read and deleted, by the clean-up script.
    func olderBuildNode(_ node: Int) -> [UInt8] { keys.key("node", String(node)) }

    static func eval(_ script: String, keys: [[UInt8]], _ arguments: [[UInt8]]) -> [[UInt8]] {
        ClusterKeys.eval(script, keys: keys, arguments)
    }

    /// One step (from `cursor`) of the clean-up script (`ConnectionBrokerRoleScripts.nodeDied`)
    /// for node `node`'s members written by incarnation `dead` (nil: every one), except those
    /// `keep` wrote (nil: none).
    func nodeDied(_ node: Int, dead: UInt64?, keep: UInt64?, cursor: [UInt8]) -> [[UInt8]] {
        Self.eval(ConnectionBrokerRoleScripts.nodeDied, keys: [owned(node), olderBuildNode(node)],
                  [rolePrefix] + ClusterKeys.cleanUpArguments(dead: dead, keep: keep, cursor: cursor, batchEntries: cleanUpBatchEntries))
    }
}

/// The protocol tag of connection-broker messages in a node inbox.
let connectionBrokerClusterTag = UInt8(ascii: "B")

extension ConnectionBroker {
    /// Cleans up after node `node` of the cluster died (its heartbeat expired, or it is known
    /// to be gone): on every shard of this node, each channel end whose peer lived there is
    /// closed with `channel_closed_notification`, and each request waiting for that node's
    /// answer fails ("Delivery failed"; a `reference` probe: "Target connection not found" /
    /// "Channel not found"); shard 0 also removes the node's role members in Redis, whichever
    /// incarnation of the node wrote them (every node may do it: the second finds nothing; the
    /// membership code's deaths remove only the dead incarnation's). Any thread. False when a
    /// shard refused the post (inbox full) or the broker is not running: call it again.
    @discardableResult
    public func nodeDied(_ node: Int) -> Bool {
        let (broker, n) = diagnostics.withLock { ($0.broker, $0.shardCount) }
        guard let broker, n > 0 else { return false }
        let handlers = handlers
        var all = true
        for shard in 0..<n {
            let posted = broker.execute(onShard: shard) { context in handlers[context]?.peerNodeDied(node, incarnation: nil) }
            all = all && posted.isQueued
        }
        return all
    }
}

extension ConnectionBrokerHandler: ClusterMessageReceiver {
    // MARK: - Routing

    /// The node of a connection or channel id when it is another node's; nil when it is this
    /// node's (always nil on one node: ids carry no node there).
    func remoteNode(of id: UUID4) -> Int? {
        guard let clusterNode, id.node != clusterNode else { return nil }
        return id.node
    }

    func remoteNode(of socket: SocketID) -> Int? {
        guard let clusterNode, socket.node != clusterNode else { return nil }
        return socket.node
    }

    /// The first hop of a request without an answer (strict `message`, `close`): false when
    /// refused at once (Redis unreachable); the caller fails the request. Counted.
    func sendRemote(_ node: Int, _ message: ConnectionBrokerRemote) -> Bool {
        if context.sendToClusterNode(node, tag: connectionBrokerClusterTag, message.encode()) { return true }
        metrics.clusterUnavailable.increment()
        return false
    }

    /// An answer or a clean-up for another node: lost (counted) when refused.
    func sendRemoteReliable(_ node: Int, _ message: ConnectionBrokerRemote) {
        if !context.sendToClusterNode(node, tag: connectionBrokerClusterTag, message.encode()) {
            metrics.crossNodeLost.increment()
        }
    }

    /// The first hop of a request whose socket waits for the answer. Marks the socket waiting
    /// first (the refusal can come back inside the call), then sends; `fail` answers the
    /// request if no node took the message (node `node` is not up, or the connection was lost
    /// before Redis confirmed it) or if the node is declared dead before answering. False when
    /// refused at once: the wait is withdrawn and the caller answers the failure.
    private func sendAwaited(_ node: Int, _ socket: SocketID, _ waiting: Session.Waiting, _ message: ConnectionBrokerRemote,
                             fail: @escaping (_ reachedNoNode: Bool) -> Void) -> Bool {
        wait(socket, waiting)
        remoteWaits[socket] = (node, { fail(false) })
        let ticket = waiting.ticket
        let sent = context.sendToClusterNode(node, tag: connectionBrokerClusterTag, message.encode()) { [weak self] receivers in
            guard let self else { return }
            if let receivers, receivers >= 1 { return }  // a node took it: its answer comes
            // Still the same wait (the answer may have come first when receivers is nil).
            guard self.sessions[socket]?.waiting?.ticket == ticket else { return }
            fail(receivers == 0)
        }
        if !sent {
            _ = takeWaiting(socket, ticket)
            metrics.clusterUnavailable.increment()
        }
        return sent
    }

    // MARK: - Requests sent to another node

    func openOnNode(_ node: Int, _ socket: SocketID, _ replyTo: [UInt8]?, me: UUID4, target: UUID4, targetText: String) -> Bool {
        let ticket = newTicket()
        registry.setOpensInFlight(me, +1)
        let sent = sendAwaited(node, socket, .open(ticket: ticket, replyTo: replyTo, targetText: targetText),
                               .accept(target: target, opener: me, openerSocket: socket, ticket: ticket)) { [unowned self] reachedNoNode in
            openAnswered(socket, ticket, me, target, reachedNoNode ? .targetNotFound : .deliveryFailed)
        }
        if !sent { registry.setOpensInFlight(me, -1) }
        return sent
    }

    func routeOnNode(_ node: Int, _ socket: SocketID, _ replyTo: [UInt8]?, _ channelText: String, close: Bool,
                     channel: UUID4, me: UUID4, peer: UUID4, text: String, payloadBytes: Int) -> Bool {
        let ticket = newTicket()
        let message: ConnectionBrokerRemote = close
            ? .peerClosedReporting(channel: channel, closer: me, party: peer, replySocket: socket, ticket: ticket)
            : .deliverReporting(channel: channel, sender: me, party: peer, text: text, replySocket: socket, ticket: ticket, payloadBytes: payloadBytes)
        return sendAwaited(node, socket, .routed(ticket: ticket, replyTo: replyTo, close: close, channelText: channelText), message) { [unowned self] reachedNoNode in
            // The peer's node is gone: its end went with it (a close is then done).
            routedAnswered(socket, ticket, close || reachedNoNode ? .gone : .refused, payloadBytes: payloadBytes)
        }
    }

    func probeOnNode(_ node: Int, _ socket: SocketID, _ replyTo: [UInt8]?, _ kind: Session.ProbeKind,
                     _ query: ConnectionBrokerRemote.ProbeQuery, _ id: UUID4) -> Bool {
        let ticket = newTicket()
        return sendAwaited(node, socket, .probe(ticket: ticket, replyTo: replyTo, kind: kind),
                           .probe(query: query, id: id, replySocket: socket, ticket: ticket)) { [unowned self] _ in
            probeAnswered(socket, ticket, false)
        }
    }

    // MARK: - Roles in Redis

    func registerInCluster(_ socket: SocketID, _ replyTo: [UInt8]?, _ id: UUID4, _ role: String, maxPerRole: Int) {
        guard let roleKeys, let clusterNode else { preconditionFailure("cluster only") }
        let ticket = newTicket()
        wait(socket, .register(ticket: ticket, replyTo: replyTo))
        let incarnation = context.clusterIncarnation
        let command = ConnectionBrokerRoleKeys.eval(ConnectionBrokerRoleScripts.register,
                                                    keys: [roleKeys.role(role), roleKeys.sequence, roleKeys.owned(clusterNode)],
                                                    [Array(id.description.utf8), Array(String(maxPerRole).utf8), Array(role.utf8),
                                                     Array(String(incarnation).utf8)])
        context.clusterCommand(command) { [unowned self] reply in
            if case .integer(let sequence)? = reply, sequence >= 0 {
                registerAnswered(socket, ticket, id, role, sequence > 0, clusterSequence: sequence)
                // Written under an incarnation that died while the script was in flight: the
                // own-death restore did not know this member yet, and a clean-up of the old
                // incarnation would remove it. Tagged anew here.
                if sequence > 0, incarnation != context.clusterIncarnation, registry.connections[id] != nil {
                    restoreMembersInCluster(role, [id])
                }
                return
            }
            clusterRequestFailed(socket, ticket, "register_failed")
        }
    }

    func listInCluster(_ socket: SocketID, _ replyTo: [UInt8]?, _ role: String, limit: Int) {
        guard let roleKeys else { preconditionFailure("cluster only") }
        let ticket = newTicket()
        wait(socket, .list(ticket: ticket, replyTo: replyTo))
        let command = ConnectionBrokerRoleKeys.eval(ConnectionBrokerRoleScripts.list, keys: [roleKeys.role(role)], [Array(String(max(1, limit)).utf8)])
        context.clusterCommand(command) { [unowned self] reply in
            guard case .array(let items)? = reply, items.count == 2, case .integer(let total) = items[0],
                  case .array(let members) = items[1] else {
                return clusterRequestFailed(socket, ticket, "list_by_role_failed")
            }
            let ids = members.prefix(limit).compactMap { m -> UUID4? in
                if case .bulkString(let b) = m { UUID4(String(decoding: b, as: UTF8.self)) } else { nil }
            }
            metrics.listEntriesVisited.wrappingAdd(ids.count, ordering: .relaxed)
            listAnswered(socket, ticket, ids, cut: Int(total) > ids.count)
        }
    }

    /// Removes `id` from `role` in Redis, then runs `then` (also when Redis is unreachable:
    /// the removal is then kept and sent again when this shard's Redis connection is back;
    /// beyond `maxPendingRoleRemovals` the entry stays until the node is declared dead, counted).
    func removeMemberInCluster(_ id: UUID4, from role: String, then: @escaping () -> Void) {
        guard let roleKeys, let clusterNode else { preconditionFailure("cluster only") }
        let command = ConnectionBrokerRoleKeys.eval(ConnectionBrokerRoleScripts.remove, keys: [roleKeys.role(role), roleKeys.owned(clusterNode)],
                                                    [Array(id.description.utf8), Array(role.utf8)])
        context.clusterCommand(command) { [unowned self] reply in
            if case .integer? = reply {} else { keepRemoval(id, role) }
            then()
        }
    }

    /// A removal Redis did not answer waits for the next connection (bounded).
    private func keepRemoval(_ id: UUID4, _ role: String) {
        guard unremovedMembers.count < options.maxPendingRoleRemovals else { return metrics.crossNodeLost.increment() }
        unremovedMembers[id] = role
    }

    /// Sends the kept removals again, `restoreBatchIds` per script; those Redis does not answer
    /// are kept for the next connection.
    func retryRemovalsInCluster() {
        guard let roleKeys, let clusterNode, !unremovedMembers.isEmpty else { return }
        let pending = Array(unremovedMembers)
        unremovedMembers.removeAll(keepingCapacity: true)
        for batch in pending.batches(of: Self.restoreBatchIds) {
            var arguments = [roleKeys.rolePrefix]
            for (id, role) in batch { arguments += [Array(id.description.utf8), Array(role.utf8)] }
            let command = ConnectionBrokerRoleKeys.eval(ConnectionBrokerRoleScripts.removeMany, keys: [roleKeys.owned(clusterNode)], arguments)
            context.clusterCommand(command) { [unowned self] reply in
                guard case .integer? = reply else {
                    for (id, role) in batch { keepRemoval(id, role) }
                    return
                }
                metrics.roleRemovalsRetried.wrappingAdd(batch.count, ordering: .relaxed)
            }
        }
    }

    /// Writes every connection registered on this shard back to its role where Redis lacks it,
    /// each tagged with this node's incarnation now: after the shard's Redis connection came up
    /// (a restarted Redis is empty) and after the other nodes declared this one dead while it
    /// lived (their clean-up removed its members, or will: it removes only the old
    /// incarnation's). One script per role and `restoreBatchIds` ids. The ids of a batch Redis
    /// does not answer are kept (`unrestoredMembers`) for the backlog's drain; this full
    /// write-back covers those kept before it.
    func restoreMembersInCluster() {
        guard roleKeys != nil, clusterNode != nil else { return }
        unrestoredMembers.removeAll()
        restoreMembersInCluster(registry.connections.keys)
    }

    /// The write-backs Redis did not answer, again (after the backlog drained). Those it does
    /// not answer this time are kept again.
    private func retryRestoresInCluster() {
        guard !unrestoredMembers.isEmpty else { return }
        let ids = unrestoredMembers
        unrestoredMembers.removeAll()
        restoreMembersInCluster(ids)
    }

    /// `restoreMembersInCluster` for `ids`, every one registered, grouped by role.
    private func restoreMembersInCluster(_ ids: some Sequence<UUID4>) {
        var byRole: [String: [UUID4]] = [:]
        for id in ids {
            // Both callers pass registered ids: the registry's own, or the kept ones (a
            // disconnect removes its id from those).
            guard let record = registry.connections[id] else {
                assertionFailure("write-back of \(id), which is not registered")
                continue
            }
            byRole[record.role, default: []].append(id)
        }
        for (role, ids) in byRole { restoreMembersInCluster(role, ids) }
    }

    /// `restoreMembersInCluster` for the ids `ids` of role `role`, each at the sequence number
    /// its register got (its place in the role).
    private func restoreMembersInCluster(_ role: String, _ ids: [UUID4]) {
        guard let roleKeys, let clusterNode else { return }
        let incarnation = Array(String(context.clusterIncarnation).utf8)
        for batch in ids.batches(of: Self.restoreBatchIds) {
            var arguments = [Array(role.utf8), incarnation]
            arguments.reserveCapacity(2 + 2 * batch.count)
            for id in batch {
                arguments.append(Array(id.description.utf8))
                arguments.append(Array(String(registry.connections[id]?.clusterSequence ?? 0).utf8))
            }
            let command = ConnectionBrokerRoleKeys.eval(ConnectionBrokerRoleScripts.restore,
                                                        keys: [roleKeys.role(role), roleKeys.sequence, roleKeys.owned(clusterNode)],
                                                        arguments)
            context.clusterCommand(command) { [unowned self] reply in
                if case .integer(let added)? = reply {
                    metrics.roleMembersRestored.wrappingAdd(Int(added), ordering: .relaxed)
                } else {
                    // Kept for the drain of a full backlog, or the next connection (which
                    // writes every member back and clears these).
                    // Only ids still registered: one that closed while its script waited has
                    // nothing to write back, and keeping it would let the set outgrow the registry.
                    let kept = batch.filter { registry.connections[$0] != nil }
                    metrics.roleRestoresKept.wrappingAdd(kept.count, ordering: .relaxed)
                    unrestoredMembers.formUnion(kept)
                    assert(unrestoredMembers.count <= registry.connections.count, "kept write-backs outgrew the registry")
                }
            }
        }
    }

    /// Ids in one restore script: bounds the script's run in Redis (and the command's size).
    static let restoreBatchIds = 256

    /// A register or list Redis could not answer: "Server busy", as a refused post.
    private func clusterRequestFailed(_ socket: SocketID, _ ticket: UInt64, _ type: String) {
        guard let waiting = takeWaiting(socket, ticket) else { return }
        metrics.clusterUnavailable.increment()
        let replyTo: [UInt8]?
        switch waiting {
        case .register(_, let r), .list(_, let r): replyTo = r
        default: return assertionFailure("only register and list wait for Redis")
        }
        sendFailure(socket, type, replyTo: replyTo, error: "Server busy")
        resume(socket)
    }

    // MARK: - Receiving

    package func receiveClusterMessage(tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard tag == connectionBrokerClusterTag else { return false }
        guard let message = ConnectionBrokerRemote.decode(bytes), let shard = message.destinationShard(shardCount: shardCount) else {
            metrics.crossNodeLost.increment()
            return true
        }
        if shard == shardIndex {
            apply(message)
        } else if !execute(on: shard, { $0.apply(message) }).isQueued {
            metrics.crossNodeLost.increment()
        }
        return true
    }

    /// On the destination shard: what the sending shard would have posted, run here.
    func apply(_ message: ConnectionBrokerRemote) {
        switch message {
        case .accept(let target, let opener, let openerSocket, let ticket):
            let answer = acceptChannel(target: target, opener: opener, openerSocket: openerSocket)
            sendRemoteReliable(openerSocket.node, .openAnswered(socket: openerSocket, ticket: ticket, me: opener, target: target, answer: answer))
        case .openAnswered(let socket, let ticket, let me, let target, let answer):
            openAnswered(socket, ticket, me, target, answer)
        case .deliver(let channel, let sender, let party, let text):
            deliver(channel, from: sender, to: party, text)
        case .deliverReporting(let channel, let sender, let party, let text, let replySocket, let ticket, let payloadBytes):
            let delivery = deliverReporting(channel, from: sender, to: party, text)
            sendRemoteReliable(replySocket.node, .routedAnswered(socket: replySocket, ticket: ticket, delivery: delivery, payloadBytes: payloadBytes))
        case .peerClosed(let channel, let closer, let party):
            peerClosed(channel, by: closer, party: party)
        case .peerClosedReporting(let channel, let closer, let party, let replySocket, let ticket):
            peerClosed(channel, by: closer, party: party)
            sendRemoteReliable(replySocket.node, .routedAnswered(socket: replySocket, ticket: ticket, delivery: .delivered, payloadBytes: 0))
        case .routedAnswered(let socket, let ticket, let delivery, let payloadBytes):
            routedAnswered(socket, ticket, delivery, payloadBytes: payloadBytes)
        case .peersGone(let gone, let ends):
            peersGone(gone, ends)
        case .probe(let query, let id, let replySocket, let ticket):
            let found = query == .target ? registry.connections[id] != nil : registry.channelExists(id)
            sendRemoteReliable(replySocket.node, .probeAnswered(socket: replySocket, ticket: ticket, found: found))
        case .probeAnswered(let socket, let ticket, let found):
            probeAnswered(socket, ticket, found)
        }
    }

    // MARK: - A node died

    /// The membership code's event (on every shard, cluster_node_ttl_ms after the node's
    /// last heartbeat at most): this shard's part of `ConnectionBroker.nodeDied`, for the role
    /// members incarnation `incarnation` wrote.
    public func handleClusterNodeDied(_ node: Int, incarnation: UInt64) { peerNodeDied(node, incarnation: incarnation) }

    /// The shard's Redis connection is up (at start, or again): the removals Redis did not answer
    /// are sent again, and the members go back to Redis where it lacks them.
    public func handleClusterConnected() {
        if shardIndex == 0 {
            removePreviousIncarnationsInCluster()
            resumeCleanUpsInCluster()
        }
        retryRemovalsInCluster()
        restoreMembersInCluster()
    }

    /// The shard's Redis backlog drained after it refused a command for lack of room, which
    /// no reconnect follows: the removals, write-backs and (shard 0) clean-ups it cut go out
    /// now. A connection's first scripts can fill the backlog by themselves (shard 0's own
    /// clean-up, then one write-back per role and 256 ids), so this is not only for loaded
    /// shards.
    public func handleClusterBacklogDrained() {
        context.assertOnShard()
        if shardIndex == 0 { resumeCleanUpsInCluster() }
        retryRemovalsInCluster()
        retryRestoresInCluster()
    }

    /// At each of shard 0's Redis connections: the members this node's earlier incarnations
    /// wrote leave their roles. Another node removes an earlier process's when it sees the
    /// restart, but none may have been up to see it (the whole cluster restarted, or one node
    /// alone); their connections are gone either way. Those of this process's own earlier
    /// incarnation (declared dead while it lived) are written back under the current one by
    /// the restore that follows. One scan of the node's own registrations per connect, in
    /// steps (`ClusterKeys.cleanUpInSteps`).
    private func removePreviousIncarnationsInCluster() {
        guard let roleKeys, let clusterNode else { return }
        let keep = context.clusterIncarnation
        // Not kept when unanswered: it runs again, whole, at the next connection.
        cleanUpInCluster({ roleKeys.nodeDied(clusterNode, dead: nil, keep: keep, cursor: $0) }) { [unowned self] removed, _ in
            metrics.staleRoleMembersRemoved.wrappingAdd(removed, ordering: .relaxed)
        }
    }

    /// Runs a clean-up script step by step on this shard's Redis connection, from `cursor`.
    private func cleanUpInCluster(_ command: @escaping ([UInt8]) -> [[UInt8]], from cursor: [UInt8] = ClusterKeys.firstCursor,
                                  done: @escaping (_ removed: Int, _ unanswered: [UInt8]?) -> Void) {
        ClusterKeys.cleanUpInSteps(command, send: { [unowned self] arguments, completion in
            context.clusterCommand(arguments, completion)
        }, from: cursor, done: done)
    }

    /// At shard 0's Redis connection, or when its backlog drained: the clean-ups of dead
    /// incarnations that Redis stopped answering (or refused for a full backlog) go on from
    /// the step each reached (`UnfinishedCleanUps`).
    private func resumeCleanUpsInCluster() {
        context.assertOnShard()
        assert(shardIndex == 0, "shard 0 runs the clean-ups")
        for cleanUp in unfinishedCleanUps.takeAll() {
            metrics.cleanUpsResumed.increment()
            removeIncarnationMembersInCluster(cleanUp.node, incarnation: cleanUp.incarnation, from: cleanUp.cursor)
        }
    }

    /// Incarnation `incarnation` of node `node` died (nil: a death declared by hand, every
    /// incarnation's members go).
    func peerNodeDied(_ node: Int, incarnation: UInt64?) {
        guard let clusterNode else { return }
        guard node != clusterNode else {
            // The others declared this node dead while it lived: they removed its role members,
            // or will (each as it learns of the death). Shard 0 removes what the dead
            // incarnation wrote (the members of connections that closed while Redis was away
            // among them), and every shard writes its members back under the new incarnation,
            // which no clean-up of the old one touches: in whichever order these run, the
            // members end up present once.
            if shardIndex == 0, let incarnation { removeNodeMembersInCluster(node, incarnation: incarnation) }
            return restoreMembersInCluster()
        }
        var lost: [(channel: UUID4, closer: UUID4, party: UUID4)] = []
        for (id, record) in registry.connections {
            for (channel, end) in record.channels where end.peerSocket.node == node && end.peer != id {
                lost.append((channel, end.peer, id))
            }
        }
        for (channel, closer, party) in lost {
            metrics.channelsClosedByNodeDeath.increment()
            peerClosed(channel, by: closer, party: party)
        }
        let waits = remoteWaits.filter { $0.value.node == node }
        for (_, wait) in waits { wait.fail() }
        if shardIndex == 0 { removeNodeMembersInCluster(node, incarnation: incarnation) }
    }

    /// The role members incarnation `incarnation` of node `node` wrote (nil: every
    /// incarnation's, a death declared by hand) leave Redis.
    private func removeNodeMembersInCluster(_ node: Int, incarnation: UInt64?) {
        guard let incarnation else {
            // By hand: not kept when unanswered (`UnfinishedCleanUps` says why).
            guard let roleKeys else { return }
            return cleanUpInCluster({ roleKeys.nodeDied(node, dead: nil, keep: nil, cursor: $0) }) { _, _ in }
        }
        removeIncarnationMembersInCluster(node, incarnation: incarnation)
    }

    /// One dead incarnation's clean-up, from `cursor`. A step Redis does not answer is kept,
    /// with its cursor, for shard 0's next Redis connection or backlog drain
    /// (`resumeCleanUpsInCluster`).
    private func removeIncarnationMembersInCluster(_ node: Int, incarnation: UInt64, from cursor: [UInt8] = ClusterKeys.firstCursor) {
        guard let roleKeys else { return }
        cleanUpInCluster({ roleKeys.nodeDied(node, dead: incarnation, keep: nil, cursor: $0) }, from: cursor) { [unowned self] _, unanswered in
            guard let unanswered else { return }
            context.assertOnShard()  // the table is this shard's; Redis answers on it
            unfinishedCleanUps.keep(.init(node: node, incarnation: incarnation, cursor: unanswered))
        }
    }
}
