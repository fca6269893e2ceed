import Foundation  // JSONSerialization: the test reads the broker's JSON independently of SwitchboardJSON
@testable import Switchboard  // deliverNodeDeath: the membership code's event
import SwitchboardProtocols
import SwitchboardRESP
import SwitchboardTestSupport
import Testing

/// A connection-broker client on one node: one thread at a time.
final class CBNodeClient {
    let socket: TestClient
    var nextId = 1
    var connectionId = ""

    init(port: Int) throws {
        socket = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
        #expect(try socket.upgrade().status == 101)
    }

    @discardableResult
    func request(_ type: String, _ fields: String = "") throws -> Int {
        let id = nextId
        nextId += 1
        try socket.sendText("{\"type\":\"\(type)\",\"id\":\(id)\(fields.isEmpty ? "" : "," + fields)}")
        return id
    }

    func read() throws -> [String: Any] {
        while true {
            let frame = try socket.readFrame()
            if frame.opcode == 9 || frame.opcode == 10 { continue }
            #expect(frame.opcode == 1, "a text frame, got \(frame)")
            return try #require(try JSONSerialization.jsonObject(with: Data(frame.text.utf8)) as? [String: Any], "\(frame.text)")
        }
    }

    /// The next message, checked: its type, `replyTo`, and these string fields.
    @discardableResult
    func expect(_ type: String, replyTo: Int? = nil, _ fields: [String: String] = [:],
                sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let m = try read()
        #expect(m["type"] as? String == type, "\(m)", sourceLocation: sourceLocation)
        #expect(m["replyTo"] as? Int == replyTo, "\(m)", sourceLocation: sourceLocation)
        for (k, v) in fields { #expect(m[k] as? String == v, "\(k) in \(m)", sourceLocation: sourceLocation) }
        return m
    }

    /// A failure in either profile: strict `<type>` or reference `error`, with `error` = text.
    func expectFailure(_ strictType: String, replyTo: Int, _ error: String, profile: ConnectionBrokerOptions.Profile,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        try expect(profile == .strict ? strictType : "error", replyTo: replyTo, ["error": error], sourceLocation: sourceLocation)
    }

    /// True when no frame arrives within `milliseconds`.
    func nothingArrives(milliseconds: Int) -> Bool {
        socket.setReceiveTimeout(milliseconds: milliseconds)
        defer { socket.setReceiveTimeout(milliseconds: 10_000) }
        guard let frame = try? socket.readFrame() else { return true }
        Issue.record("unexpected frame: \(frame.text)")
        return false
    }

    func register(_ role: String) throws {
        let id = try request("register", "\"role\":\"\(role)\"")
        connectionId = try #require(try expect("registered", replyTo: id)["connectionId"] as? String)
    }

    func list(_ role: String) throws -> [String] {
        let id = try request("list_by_role", "\"role\":\"\(role)\"")
        return try expect("connections", replyTo: id)["ids"] as? [String] ?? ["<not a string array>"]
    }

    func open(to target: CBNodeClient) throws -> String {
        let id = try request("open", "\"targetId\":\"\(target.connectionId)\"")
        let channel = try #require(try expect("channel_opened", replyTo: id)["channelId"] as? String)
        try target.expect("incoming_channel", ["from": connectionId, "channelId": channel])
        return channel
    }
}

/// Three connection-broker nodes (in-process brokers, two shards each, as the other in-process
/// cluster tests) over one real redis-server started here.
@Suite("Cluster: connection broker across three nodes", .serialized)
struct ClusterConnectionBrokerTests {
    final class Node {
        let broker: Broker
        let cb: ConnectionBroker
        init(_ id: Int, redisPort: Int, profile: ConnectionBrokerOptions.Profile, backend: IOBackendKind,
             configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
            var options = ConnectionBrokerOptions()
            options.profile = profile
            options.maxConnectionsPerRole = 5
            cb = ConnectionBroker(options: options)
            var configuration = BrokerConfiguration.clusterTestNode(id, redisPort: redisPort, backend: backend)
            configure(&configuration)
            broker = Broker(configuration: configuration, logger: .discarding, handlerFactory: cb.handlerFactory())
            try broker.start()
        }
        var port: Int { broker.port }
        func metric(_ name: String) -> Int { cb.metrics.all.first { $0.name == name }?.value ?? -1 }
        /// Its shards connected to Redis now.
        var connectedShards: Int { clusterMetric("switchboard_cluster_redis_connected") }
        /// A cluster counter, summed over the shards.
        func clusterMetric(_ name: String) -> Int {
            broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
        }
    }

    func nodes(_ redis: RedisServer, profile: ConnectionBrokerOptions.Profile, backend: IOBackendKind = .epoll,
               configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> [Node] {
        let nodes = try (1...3).map { try Node($0, redisPort: redis.port, profile: profile, backend: backend, configure: configure) }
        let probe = try RedisProbe(port: redis.port)
        for id in 1...3 { #expect(waitUntil { (try? probe.subscriberCount("switchboard:node:\(id)")) == 1 }, "node \(id)'s inbox") }
        return nodes
    }

    /// Redis drops every node's connections (its data stays; `probe`'s own survives): the
    /// subscribers' (shard 0's holds the node's inbox subscription) and the others'. Each
    /// shard reconnects after its backoff.
    func cutRedisConnections(_ probe: RedisProbe) throws {
        _ = try probe.call(["CLIENT", "KILL", "TYPE", "pubsub"])
        _ = try probe.call(["CLIENT", "KILL", "TYPE", "normal"])
    }

    /// Node `node` (no such process here) in role `r`: a member its incarnation 7 wrote (`dead`)
    /// and one its incarnation 8 wrote (`live`), at role scores `score` and `score + 1`.
    func seedIncarnations(_ probe: RedisProbe, node: Int, score: Int = 0) throws -> (dead: String, live: String) {
        let dead = String(format: "%02d000000-0000-4000-8000-000000000001", node)
        let live = String(format: "%02d000000-0000-4000-8000-000000000002", node)
        _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", String(score), dead, String(score + 1), live])
        _ = try probe.call(["HSET", "switchboard:{cb}:owned:\(node)", dead + "r", "7", live + "r", "8"])
        return (dead, live)
    }

    /// A client of `node`, registered with `role`.
    func client(on node: Node, registering role: String) throws -> CBNodeClient {
        let c = try CBNodeClient(port: node.port)
        try c.register(role)
        return c
    }

    @Test("register, list_by_role in registration order, open/message/close and disconnects between nodes",
          arguments: [ConnectionBrokerOptions.Profile.strict, .reference])
    func acrossNodes(profile: ConnectionBrokerOptions.Profile) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: profile)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }

        // Registration order across nodes: each register answered before the next is sent.
        var workers: [CBNodeClient] = []
        for i in 0..<5 { workers.append(try client(on: nodes[[0, 1, 2, 0, 1][i]], registering: "worker")) }
        // Ids carry their node in the top byte.
        #expect(workers.map { String($0.connectionId.prefix(2)) } == ["01", "02", "03", "01", "02"])
        for n in 0..<3 {
            let lister = try CBNodeClient(port: nodes[n].port)
            if profile == .strict { try lister.register("lister") }
            #expect(try lister.list("worker") == workers.map(\.connectionId), "the same order from node \(n + 1)")
        }
        // max_connections_per_role (5) holds for the whole cluster, checked in one script.
        let sixth = try CBNodeClient(port: nodes[2].port)
        let refused = try sixth.request("register", "\"role\":\"worker\"")
        try sixth.expectFailure("register_failed", replyTo: refused, "Too many connections for role", profile: profile)

        // open from node 1 to node 2; messages both ways keep their order; the target hears
        // incoming_channel before the first message.
        let (a, b, c) = (workers[0], workers[1], workers[2])
        let ab = try a.open(to: b)
        for i in 0..<50 { try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":{\"n\":\(i)}") }
        for i in 0..<50 { try b.request("message", "\"channelId\":\"\(ab)\",\"payload\":[\(i)]") }
        var toB: [Int] = [], toA: [Int] = [], sentA = 0, sentB = 0
        while toB.count < 50 || sentB < 50 {
            let m = try b.read()
            switch m["type"] as? String {
            case "channel_message": toB.append(try #require((m["payload"] as? [String: Any])?["n"] as? Int))
            case "channel_message_sent": sentB += 1
            default: Issue.record("unexpected \(m)")
            }
        }
        while toA.count < 50 || sentA < 50 {
            let m = try a.read()
            switch m["type"] as? String {
            case "channel_message": toA.append(try #require((m["payload"] as? [Int])?.first))
            case "channel_message_sent": sentA += 1
            default: Issue.record("unexpected \(m)")
            }
        }
        #expect(toB == Array(0..<50) && toA == Array(0..<50), "per channel and direction, in send order")
        // They went through Redis: node 2's inbox took at least the 50 messages for b.
        let received = nodes[1].broker.metricSamples().filter { $0.name == "switchboard_cluster_addressed_received_total" }.reduce(0) { $0 + Int($1.value) }
        #expect(received >= 50, "\(received)")

        // The closer's earlier messages arrive before the notification.
        let sends = try (0..<5).map { i in try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":\(i)") }
        let close = try a.request("close", "\"channelId\":\"\(ab)\"")
        for i in 0..<5 { #expect(try b.expect("channel_message", ["channelId": ab])["payload"] as? Int == i) }
        try b.expect("channel_closed_notification", ["channelId": ab])
        for id in sends { try a.expect("channel_message_sent", replyTo: id, ["channelId": ab]) }
        try a.expect("channel_closed", replyTo: close, ["channelId": ab])
        let stale = try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: stale, "Channel not found", profile: profile)

        // A disconnect on node 3: the peer on node 1 is notified, and whoever saw the
        // notification lists the role without it.
        let ca = try c.open(to: a)
        try c.socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        try a.expect("channel_closed_notification", ["channelId": ca])
        #expect(try a.list("worker") == [workers[0], workers[1], workers[3], workers[4]].map(\.connectionId))
        #expect(nodes[0].cb.counts.channels == 0 && nodes[2].cb.counts.channels == 0)

        // A target id naming a node that is not up: no node takes the open.
        var ghost = Array(b.connectionId)
        ghost[0] = "0"; ghost[1] = "9"
        let toGhost = try a.request("open", "\"targetId\":\"\(String(ghost))\"")
        try a.expectFailure("channel_open_failed", replyTo: toGhost, "Target connection not found", profile: profile)
        for n in nodes { #expect(n.metric("cb_cross_node_lost_total") == 0) }
    }

    @Test("Redis restarted empty: every node writes its registered connections back to their roles; a node declared dead while it lives writes its own back",
          arguments: [IOBackendKind.uring, .epoll])
    func rolesOutliveRedis(backend: IOBackendKind) throws {
        var redis = try RedisServer()
        let port = redis.port
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: .strict, backend: backend)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let a = try client(on: nodes[0], registering: "r")
        let b = try client(on: nodes[1], registering: "r")
        let c = try client(on: nodes[1], registering: "s")
        #expect(nodes.map { $0.metric("cb_role_members_restored_total") } == [0, 0, 0], "nothing was missing at start")

        redis.stop()
        redis = try RedisServer(port: port)
        let probe = try RedisProbe(port: port)
        func members(_ role: String) -> RESPValue? { try? probe.call(["ZCARD", "switchboard:{cb}:role:\(role)"]) }
        // Each shard writes its members back once its connection is up again (counted when
        // Redis answered); then every shard of every node is connected.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.map { $0.metric("cb_role_members_restored_total") } == [1, 2, 0] })
        #expect(members("r") == .integer(2) && members("s") == .integer(1))
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { $0.connectedShards == 2 } })
        let lister = try client(on: nodes[2], registering: "lister")
        #expect(try lister.list("r") == [a.connectionId, b.connectionId], "each back at its own sequence number: registration order")
        #expect(try lister.list("s") == [c.connectionId])
        // The counter moved past them: a new member comes after.
        let d = try client(on: nodes[2], registering: "r")
        #expect(try lister.list("r") == [a.connectionId, b.connectionId, d.connectionId])
        _ = try a.open(to: b)  // and they are reachable

        // Node 2 declares node 1 dead while it lives: its clean-up removes a. Node 1 hears of its
        // own death (as the membership code delivers it: a new incarnation, then the old one's
        // death) and writes a back.
        #expect(nodes[1].cb.nodeDied(1))
        #expect(waitUntil { members("r") == .integer(2) })
        let old = nodes[0].broker.clusterIncarnation.renew()
        nodes[0].broker.deliverNodeDeath(1, incarnation: old)
        #expect(waitUntil { nodes[0].metric("cb_role_members_restored_total") == 2 })
        #expect(members("r") == .integer(3))
        #expect(try lister.list("r") == [a.connectionId, b.connectionId, d.connectionId], "a back in its place")
    }

    @Test("a clean-up of a node's old incarnation that runs after the node heard of its own death leaves the members it wrote back; the new incarnation's death removes them",
          arguments: [IOBackendKind.uring, .epoll])
    func lateCleanUp(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: .strict, backend: backend)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        // Node 1's members on both its shards (the acceptor spreads connections over them).
        let members = try (0..<4).map { _ in try client(on: nodes[0], registering: "r") }
        let c = try client(on: nodes[1], registering: "r")
        let lister = try client(on: nodes[2], registering: "lister")
        let probe = try RedisProbe(port: redis.port)
        let old = nodes[0].broker.clusterIncarnation.current
        func owned() throws -> [String: String] {
            guard case .array(let pairs) = try probe.call(["HGETALL", "switchboard:{cb}:owned:1"]) else { return [:] }
            var map: [String: String] = [:]
            for i in stride(from: 0, to: pairs.count - 1, by: 2) {
                if case .bulkString(let f) = pairs[i], case .bulkString(let v) = pairs[i + 1] {
                    map[String(decoding: f, as: UTF8.self)] = String(decoding: v, as: UTF8.self)
                }
            }
            return map
        }
        func tagged(_ incarnation: UInt64) -> [String: String] {
            Dictionary(uniqueKeysWithValues: members.map { ($0.connectionId + "r", String(incarnation)) })
        }
        #expect(try owned() == tagged(old), "each member tagged with its writer's incarnation")
        // A member of the old incarnation whose connection is gone (as one whose removal Redis
        // never got): the clean-ups below remove it, which shows that they ran.
        func plantStale(_ id: String) throws {
            _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", "0", id])
            _ = try probe.call(["HSET", "switchboard:{cb}:owned:1", id + "r", String(old)])
        }
        let stale = "01000000-0000-4000-8000-000000000001", stale2 = "01000000-0000-4000-8000-000000000002"
        try plantStale(stale)

        // The others declared node 1 dead while it lived: its engine renews the incarnation and
        // tells its shards. Shard 0 removes what the old one wrote; every shard writes its
        // members back under the new one.
        #expect(nodes[0].broker.clusterIncarnation.renew() == old)
        let new = nodes[0].broker.clusterIncarnation.current
        nodes[0].broker.deliverNodeDeath(1, incarnation: old)
        #expect(waitUntil { (try? owned()) == tagged(new) }, "the stale member gone, the live ones tagged anew")
        #expect(try lister.list("r") == members.map(\.connectionId) + [c.connectionId], "back in their places: registration order")

        // Nodes 2 and 3 learn of the old incarnation's death late, after all that.
        try plantStale(stale2)
        nodes[1].broker.deliverNodeDeath(1, incarnation: old)
        nodes[2].broker.deliverNodeDeath(1, incarnation: old)
        #expect(waitUntil { (try? owned()) == tagged(new) }, "only the old incarnation's stale member went")
        #expect(try lister.list("r") == members.map(\.connectionId) + [c.connectionId], "node 1's live members stay")

        // The new incarnation dies: its members go.
        nodes[1].broker.deliverNodeDeath(1, incarnation: new)
        #expect(waitUntil { (try? owned()) == [:] })
        #expect(try lister.list("r") == [c.connectionId])
    }

    @Test("each node's shard 0, whenever it reaches Redis, removes the role members its node's earlier processes left (nobody was up to see them die)",
          arguments: [IOBackendKind.uring, .epoll])
    func earlierProcesses(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // What earlier processes of nodes 1 and 2 left: members tagged with their incarnations.
        let probe = try RedisProbe(port: redis.port)
        let stale = ["01000000-0000-4000-8000-000000000001", "01000000-0000-4000-8000-000000000002", "02000000-0000-4000-8000-000000000003"]
        for (i, id) in stale.enumerated() {
            _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", String(i), id])
            _ = try probe.call(["HSET", "switchboard:{cb}:owned:\(id.hasPrefix("01") ? 1 : 2)", id + "r", String(1000 + i)])
        }
        let nodes = try nodes(redis, profile: .strict, backend: backend)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntil { nodes.map { $0.metric("cb_stale_role_members_removed_total") } == [2, 1, 0] })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(0))
        #expect(try probe.call(["EXISTS", "switchboard:{cb}:owned:1", "switchboard:{cb}:owned:2"]) == .integer(0))
        // At every reconnect too: another stale member goes, the new process's own stays.
        let a = try client(on: nodes[0], registering: "r")
        _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", "0", stale[0]])
        _ = try probe.call(["HSET", "switchboard:{cb}:owned:1", stale[0] + "r", "1000"])
        try cutRedisConnections(probe)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes[0].metric("cb_stale_role_members_removed_total") == 3 })
        #expect(try probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"]) == .array([.bulkString(Array(a.connectionId.utf8))]))
        #expect(waitUntil(timeoutMilliseconds: 10_000) { (try? a.list("r")) == [a.connectionId] })
        #expect(nodes.map { $0.metric("cb_role_members_restored_total") } == [0, 0, 0], "a was never gone")
    }

    @Test("what a build before the incarnation tags left (`P:{cb}:node:N` sets) goes at the node's first connect and at a clean-up of the node; a member the node's hash still holds stays",
          arguments: [IOBackendKind.uring, .epoll])
    func olderBuild(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // An old build of nodes 1 and 2 registered these (a set per node, no writer recorded)
        // and stopped; the new build starts on the same Redis.
        let probe = try RedisProbe(port: redis.port)
        let old = ["01000000-0000-4000-8000-00000000000a", "01000000-0000-4000-8000-00000000000b", "02000000-0000-4000-8000-00000000000c"]
        for (i, id) in old.enumerated() {
            _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", String(i), id])
            #expect(try probe.call(["SADD", "switchboard:{cb}:node:\(id.hasPrefix("01") ? 1 : 2)", id + "r"]) == .integer(1))
        }
        let nodes = try nodes(redis, profile: .strict, backend: backend)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntil { nodes.map { $0.metric("cb_stale_role_members_removed_total") } == [2, 1, 0] })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(0))
        #expect(try probe.call(["EXISTS", "switchboard:{cb}:node:1", "switchboard:{cb}:node:2"]) == .integer(0))

        // A set of node 3 that also names one of its live members (as a rolled-back build
        // could leave): a late clean-up of an old incarnation of node 3, run by node 1, removes
        // the one the hash does not hold and keeps the live one.
        let live = try client(on: nodes[2], registering: "r")
        let lister = try client(on: nodes[0], registering: "lister")
        let gone = "03000000-0000-4000-8000-00000000000d"
        _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", "0", gone])
        _ = try probe.call(["SADD", "switchboard:{cb}:node:3", gone + "r", live.connectionId + "r"])
        #expect(try lister.list("r") == [gone, live.connectionId])
        nodes[0].broker.deliverNodeDeath(3, incarnation: 12345)
        #expect(waitUntil { (try? probe.call(["EXISTS", "switchboard:{cb}:node:3"])) == .integer(0) })
        #expect(try lister.list("r") == [live.connectionId])
        #expect(try probe.call(["HEXISTS", "switchboard:{cb}:owned:3", live.connectionId + "r"]) == .integer(1))
    }

    @Test("a clean-up runs in HSCAN steps of cluster_cleanup_batch_entries: 2,500 members an earlier process of node 1 left take three to eight steps of 1,000 (the default), fifteen or more of 100; all removed, counted once in all",
          arguments: [(IOBackendKind.uring, 1_000), (.epoll, 100)])
    func cleanUpSteps(backend: IOBackendKind, batchEntries: Int) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let probe = try RedisProbe(port: redis.port)
        let stale = 2_500
        // One pipeline per key (the hash becomes a real hash table past 128 entries: HSCAN
        // then reads about COUNT entries per call).
        let ids = (0..<stale).map { String(format: "01000000-0000-4000-8000-%012d", $0) }
        _ = try probe.call(["ZADD", "switchboard:{cb}:role:r"] + ids.enumerated().flatMap { [String($0.offset), $0.element] })
        _ = try probe.call(["HSET", "switchboard:{cb}:owned:1"] + ids.flatMap { [$0 + "r", "1000"] })
        #expect(try probe.call(["HLEN", "switchboard:{cb}:owned:1"]) == .integer(Int64(stale)))
        func scans() throws -> Int {
            guard case .bulkString(let info) = try probe.call(["INFO", "commandstats"]) else { return -1 }
            let line = String(decoding: info, as: UTF8.self).split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_hscan:") }
            return line.flatMap { Int($0.split(separator: "=")[1].prefix { $0.isNumber }) } ?? 0
        }
        let nodes = try nodes(redis, profile: .strict, backend: backend) { configuration in
            if batchEntries != configuration.cluster.cleanUpBatchEntries { try! configuration.set("cluster_cleanup_batch_entries", String(batchEntries)) }
        }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.map { $0.metric("cb_stale_role_members_removed_total") } == [stale, 0, 0] })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(0))
        #expect(try probe.call(["EXISTS", "switchboard:{cb}:owned:1"]) == .integer(0))
        // Node 1's connect stepped through its hash (HSCAN's COUNT is a hint: a table of 4,096
        // buckets at 0.6 entries each); nodes 2 and 3 scanned their empty ones once.
        let calls = try scans()
        if batchEntries == 1_000 {
            #expect((3 + 2...8 + 2).contains(calls), "HSCAN calls: \(calls)")
        } else {
            #expect(calls >= 15 + 2, "HSCAN calls: \(calls)")  // 25 at exactly 100 per step
        }
    }

    @Test("a disconnect while Redis is away: the role removal is sent again once the shard is reconnected",
          arguments: [IOBackendKind.uring, .epoll])
    func removalAfterCut(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // A reconnect 0.5-1 s after a cut: the disconnect below happens inside that window.
        let nodes = try nodes(redis, profile: .strict, backend: backend) { $0.cluster.initialBackoffMilliseconds = 1000 }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let a = try client(on: nodes[0], registering: "r")
        let b = try client(on: nodes[0], registering: "r")
        let lister = try client(on: nodes[1], registering: "lister")
        #expect(try lister.list("r") == [a.connectionId, b.connectionId])

        // Redis drops every node's connections (its data stays).
        let probe = try RedisProbe(port: redis.port)
        try cutRedisConnections(probe)
        #expect(waitUntil { nodes[0].connectedShards == 0 })
        try b.socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        #expect(waitUntil { nodes[0].metric("cb_registered_connections") == 1 })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(2), "the removal did not reach Redis")
        #expect(nodes[0].metric("cb_role_removals_retried_total") == 0)

        // Reconnected: the removal goes out, and nothing is restored that left.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes[0].metric("cb_role_removals_retried_total") == 1 })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(1))
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { $0.connectedShards == 2 } })
        #expect(try lister.list("r") == [a.connectionId])
        #expect(nodes[0].metric("cb_role_members_restored_total") == 0, "a was never gone")
        #expect(nodes[0].metric("cb_cross_node_lost_total") == 0)
    }

    @Test("a death reported while Redis is away: shard 0 keeps the clean-up and runs it once reconnected (node 9 never comes back to clean up after itself); only the dead incarnation's members go",
          arguments: [IOBackendKind.uring, .epoll])
    func cleanUpAfterCut(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // A reconnect 0.5-1 s after a cut: the death below is reported inside that window.
        let nodes = try nodes(redis, profile: .strict, backend: backend) { $0.cluster.initialBackoffMilliseconds = 1000 }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let probe = try RedisProbe(port: redis.port)
        let (_, live) = try seedIncarnations(probe, node: 9)
        try cutRedisConnections(probe)
        #expect(waitUntil { nodes[1].connectedShards == 0 })
        nodes[1].broker.deliverNodeDeath(9, incarnation: 7)

        // Its first step found no connection; it goes out again when shard 0 is back.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes[1].metric("cb_cleanups_resumed_total") == 1 })
        #expect(waitUntil { (try? probe.call(["HKEYS", "switchboard:{cb}:owned:9"])) == .array([.bulkString(Array((live + "r").utf8))]) })
        #expect(try probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"]) == .array([.bulkString(Array(live.utf8))]))
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { $0.connectedShards == 2 } })
        #expect(nodes.map { $0.metric("cb_cleanups_resumed_total") } == [0, 1, 0], "kept once, on the node that heard of the death")
        #expect(nodes.map { $0.metric("cb_cross_node_lost_total") } == [0, 0, 0])
    }

    @Test("a clean-up step refused at once for a full backlog (cluster_max_pending_publishes = 1) goes out when the backlog drains, with no reconnect",
          arguments: [IOBackendKind.uring, .epoll])
    func backlogDrained(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: .strict, backend: backend) { $0.cluster.maxPendingPublishes = 1 }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let probe = try RedisProbe(port: redis.port)
        let live = [8: try seedIncarnations(probe, node: 8).live, 9: try seedIncarnations(probe, node: 9, score: 2).live]
        let connects = nodes[1].clusterMetric("switchboard_cluster_redis_connects_total")
        #expect(nodes[1].clusterMetric("switchboard_cluster_publishes_over_limit_total") == 0)

        // Redis holds every command for 800 ms (under the 5 s read timeout and node TTL): node
        // 2's shard 0 sends node 9's first clean-up step, which fills its backlog of one, so
        // node 8's step is refused at once and kept. The two deaths reach shard 0 in order.
        _ = try probe.call(["CLIENT", "PAUSE", "800", "ALL"])
        nodes[1].broker.deliverNodeDeath(9, incarnation: 7)
        nodes[1].broker.deliverNodeDeath(8, incarnation: 7)
        #expect(waitUntil { nodes[1].clusterMetric("switchboard_cluster_publishes_over_limit_total") == 1 })

        // The pause ends: node 9's step is answered, the backlog is empty, node 8's goes out.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes[1].metric("cb_cleanups_resumed_total") == 1 })
        for node in [8, 9] {
            #expect(waitUntil { (try? probe.call(["HKEYS", "switchboard:{cb}:owned:\(node)"])) == .array([.bulkString(Array((live[node]! + "r").utf8))]) })
        }
        #expect(try probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"]) == .array([live[8]!, live[9]!].map { .bulkString(Array($0.utf8)) }))
        #expect(nodes[1].clusterMetric("switchboard_cluster_backlogs_drained_total") == 1)
        #expect(nodes[1].clusterMetric("switchboard_cluster_redis_connects_total") == connects, "no reconnect: the drain resumed it")
        #expect(nodes.map { $0.metric("cb_cleanups_resumed_total") } == [0, 1, 0])
        #expect(nodes.map { $0.metric("cb_cross_node_lost_total") } == [0, 0, 0])
    }

    @Test("a write-back to a role refused for a full backlog at reconnect (shard 0's own clean-up fills a backlog of one) goes out when the backlog drains",
          arguments: [IOBackendKind.uring, .epoll])
    func restoreAfterFullBacklog(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: .strict, backend: backend) { $0.cluster.maxPendingPublishes = 1 }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let probe = try RedisProbe(port: redis.port)
        // Two connections on node 2: one per shard (the acceptor evens them out).
        let a = try client(on: nodes[1], registering: "r")
        let b = try client(on: nodes[1], registering: "r")
        #expect(try a.list("r") == [a.connectionId, b.connectionId])

        // Redis restarted empty, as far as the nodes can tell: its data gone, every connection cut.
        _ = try probe.call(["FLUSHALL"])
        try cutRedisConnections(probe)
        // At shard 0's connection its own clean-up goes first and fills the backlog: its
        // write-back is refused at once and kept, then sent when that clean-up is answered.
        #expect(waitUntil(timeoutMilliseconds: 10_000) {
            (try? probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"])) == .array([a, b].map { .bulkString(Array($0.connectionId.utf8)) })
        }, "both written back, in registration order")
        #expect(nodes[1].metric("cb_role_restores_kept_total") == 1, "shard 0's write-back of one id was kept")
        // Counted when the answer reaches the shard, after Redis ran the script.
        #expect(waitUntil { nodes[1].metric("cb_role_members_restored_total") == 2 })
        #expect(nodes[1].clusterMetric("switchboard_cluster_backlogs_drained_total") >= 1)
        #expect(try a.list("r") == [a.connectionId, b.connectionId])
        #expect(nodes.map { $0.metric("cb_cross_node_lost_total") } == [0, 0, 0])
    }

    @Test("a connection that closes while its refused write-back is kept: the drain writes back only the one still open, and the closed one's removal goes out with it",
          arguments: [IOBackendKind.uring, .epoll])
    func closeWhileRestoreKept(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try nodes(redis, profile: .strict, backend: backend) { $0.cluster.maxPendingPublishes = 1 }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let probe = try RedisProbe(port: redis.port)
        func openOnShard(_ shard: Int) -> Int {
            nodes[1].broker.metricSamples().first {
                $0.name == "switchboard_connections_open" && $0.dimensions == [.init("shard", String(shard))]
            }?.value ?? -1
        }
        // Two connections on node 2, one per shard (the acceptor evens them out); which one
        // shard 0 holds, read from its gauge between the two.
        // (The gauge counts the shard's Redis connections as well.)
        let before = [openOnShard(0), openOnShard(1)]
        let first = try client(on: nodes[1], registering: "r")
        let firstOnShard0 = openOnShard(0) == before[0] + 1
        let second = try client(on: nodes[1], registering: "r")
        #expect([openOnShard(0), openOnShard(1)] == before.map { $0 + 1 })
        let (onShard0, onShard1) = firstOnShard0 ? (first, second) : (second, first)
        #expect(try first.list("r") == [first.connectionId, second.connectionId])

        // Redis restarted empty, as far as the nodes can tell, and holds every script (and
        // publish) until UNPAUSE below: its reads, HELLO and CLIENT KILL still run. Under the
        // 5 s read timeout, so no reconnect ends the hold.
        _ = try probe.call(["FLUSHALL"])
        _ = try probe.call(["CLIENT", "PAUSE", "4000", "WRITE"])
        try cutRedisConnections(probe)
        // Shard 0's own clean-up fills its backlog of one: its write-back is refused and kept.
        #expect(waitUntil(timeoutMilliseconds: 3_000) { nodes[1].metric("cb_role_restores_kept_total") == 1 })

        // Shard 0's connection closes while its write-back is kept: its removal is refused too
        // (kept), and nothing is left to write back for it.
        try onShard0.socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        #expect(waitUntil(timeoutMilliseconds: 3_000) { nodes[1].metric("cb_registered_connections") == 1 })
        #expect(try probe.call(["ZCARD", "switchboard:{cb}:role:r"]) == .integer(0), "still held")
        _ = try probe.call(["CLIENT", "UNPAUSE"])

        // The clean-up is answered, the backlog drains: the removal goes out, and only the
        // connection still open is written back (by shard 1's own write-back, not the drain).
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes[1].metric("cb_role_removals_retried_total") == 1 })
        #expect(waitUntil { nodes[1].metric("cb_role_members_restored_total") == 1 })
        #expect(try probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"]) == .array([.bulkString(Array(onShard1.connectionId.utf8))]))
        #expect(try probe.call(["HKEYS", "switchboard:{cb}:owned:2"]) == .array([.bulkString(Array((onShard1.connectionId + "r").utf8))]))
        #expect(nodes[1].metric("cb_role_restores_kept_total") == 1)
        #expect(nodes[1].clusterMetric("switchboard_cluster_backlogs_drained_total") >= 1)
        #expect(try onShard1.list("r") == [onShard1.connectionId])
        #expect(nodes.map { $0.metric("cb_cross_node_lost_total") } == [0, 0, 0])
    }

    @Test("a node declared dead: peers get channel_closed_notification, waiting requests fail, its roles go")
    func nodeDied() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let profile = ConnectionBrokerOptions.Profile.strict
        let nodes = try nodes(redis, profile: profile, backend: .uring)
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let a = try client(on: nodes[0], registering: "r")
        let b = try client(on: nodes[1], registering: "r")
        let c = try client(on: nodes[2], registering: "r")
        let ab = try a.open(to: b)
        let cb = try c.open(to: b)

        // Node 9 is "up" (a bare Redis client holds its inbox) but never answers: an open to
        // one of its ids waits, until node 9 is declared dead.
        let silent = try RedisProbe(port: redis.port)
        _ = try silent.call(["SUBSCRIBE", "switchboard:node:9"])
        var ghost = Array(b.connectionId)
        ghost[0] = "0"; ghost[1] = "9"
        let waiting = try a.request("open", "\"targetId\":\"\(String(ghost))\"")
        let parked = try a.request("list_by_role", "\"role\":\"r\"")  // parked behind the open
        #expect(a.nothingArrives(milliseconds: 300), "nothing answers for node 9")
        #expect(nodes[0].cb.nodeDied(9))
        try a.expectFailure("channel_open_failed", replyTo: waiting, "Delivery failed", profile: profile)
        try a.expect("connections", replyTo: parked)

        // Node 2 declared dead (here while still running: what its peers do is under test).
        // Node 3 hears it as the membership code delivers it (every shard's handler).
        #expect(nodes[0].cb.nodeDied(2))
        nodes[2].broker.deliverNodeDeath(2, incarnation: nodes[1].broker.clusterIncarnation.current)
        try a.expect("channel_closed_notification", ["channelId": ab])
        try c.expect("channel_closed_notification", ["channelId": cb])
        #expect(nodes[0].metric("cb_channels_closed_by_node_death_total") == 1)
        // Shard 0 removes node 2's members; a's list may go through another shard's connection.
        let probe = try RedisProbe(port: redis.port)
        #expect(waitUntil { (try? probe.call(["ZCARD", "switchboard:{cb}:role:r"])) == .integer(2) })
        #expect(try a.list("r") == [a.connectionId, c.connectionId], "node 2's members removed in Redis")
        let late = try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: late, "Channel not found", profile: profile)
    }
}
