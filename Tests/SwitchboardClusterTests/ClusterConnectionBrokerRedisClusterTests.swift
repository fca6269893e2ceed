import Foundation
import Switchboard
import SwitchboardCluster
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The connection broker over a Redis Cluster (`cluster_redis_mode = cluster`): three
/// in-process nodes (two shards each) on the three masters `ClusterRedisClusterTests` starts.
/// The roles live on the `{cb}` slot's master, the node inboxes on the `{nodes}` slot's.
@Suite("Cluster over a Redis Cluster: connection broker across three nodes", .serialized)
struct ClusterConnectionBrokerRedisClusterTests {
    func node(_ id: Int, seedPort: Int, backend: IOBackendKind) throws -> (broker: Broker, cb: ConnectionBroker) {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 2
        configuration.io.backend = backend
        configuration.io.tickMilliseconds = 10
        configuration.webSocket.perMessageDeflate = false
        configuration.cluster.engine = .redis
        configuration.cluster.redisMode = .cluster
        configuration.cluster.redisURL = "redis://127.0.0.1:\(seedPort)"
        configuration.cluster.nodeID = id
        configuration.cluster.initialBackoffMilliseconds = 20
        configuration.cluster.maxBackoffMilliseconds = 200
        configuration.cluster.heartbeatMilliseconds = 100
        configuration.cluster.nodeTTLMilliseconds = 2_000
        var options = ConnectionBrokerOptions()
        options.profile = .strict
        let cb = ConnectionBroker(options: options)
        let broker = Broker(configuration: configuration, logger: .discarding, handlerFactory: cb.handlerFactory())
        try broker.start()
        return (broker, cb)
    }

    func metric(_ broker: Broker, _ name: String) -> Int {
        broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
    }

    /// Waits until every node sees them all as members and each of its two shards holds a
    /// connection to each of the three masters: every inbox is in place (a node heartbeats on
    /// the `{nodes}` master after subscribing its inbox there on the same connection).
    func waitUntilUp(_ nodes: [(broker: Broker, cb: ConnectionBroker)]) -> Bool {
        waitUntil(timeoutMilliseconds: 15_000) {
            nodes.allSatisfy { metric($0.broker, "switchboard_cluster_members") >= nodes.count && metric($0.broker, "switchboard_cluster_redis_connected") == 6 }
        }
    }

    /// One client per node, each registered as "worker", in node order.
    func workers(on nodes: [(broker: Broker, cb: ConnectionBroker)]) throws -> [CBNodeClient] {
        try nodes.map { node in
            let c = try CBNodeClient(port: node.broker.port)
            try c.register("worker")
            return c
        }
    }

    @Test("register and list_by_role cluster-wide, open and messages both ways between nodes, close")
    func openAndMessage() throws {
        let servers = try ClusterRedisClusterTests.startCluster()
        defer { for s in servers { s.stop() } }
        let nodes = try zip(1...3, [IOBackendKind.uring, .epoll, .uring]).map { try node($0, seedPort: servers[0].port, backend: $1) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntilUp(nodes))
        let workers = try workers(on: nodes)
        #expect(workers.map { String($0.connectionId.prefix(2)) } == ["01", "02", "03"])
        let lister = try CBNodeClient(port: nodes[2].broker.port)
        try lister.register("lister")
        #expect(try lister.list("worker") == workers.map(\.connectionId), "registration order, read on the {cb} master")

        // open from node 1 to node 2; 20 messages each way, in order.
        let (a, b, c) = (workers[0], workers[1], workers[2])
        let ab = try a.open(to: b)
        for i in 0..<20 { try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":{\"n\":\(i)}") }
        for i in 0..<20 { try b.request("message", "\"channelId\":\"\(ab)\",\"payload\":[\(i)]") }
        var toB: [Int] = [], toA: [Int] = [], sentA = 0, sentB = 0
        while toB.count < 20 || sentB < 20 {
            let m = try b.read()
            switch m["type"] as? String {
            case "channel_message": toB.append(try #require((m["payload"] as? [String: Any])?["n"] as? Int))
            case "channel_message_sent": sentB += 1
            default: Issue.record("unexpected \(m)")
            }
        }
        while toA.count < 20 || sentA < 20 {
            let m = try a.read()
            switch m["type"] as? String {
            case "channel_message": toA.append(try #require((m["payload"] as? [Int])?.first))
            case "channel_message_sent": sentA += 1
            default: Issue.record("unexpected \(m)")
            }
        }
        #expect(toB == Array(0..<20) && toA == Array(0..<20), "per channel and direction, in send order")
        #expect(metric(nodes[1].broker, "switchboard_cluster_addressed_received_total") >= 20, "through node 2's inbox")

        // Node 3 to node 1, then a close: the messages before it, then the notification.
        let ca = try c.open(to: a)
        let sends = try (0..<3).map { i in try c.request("message", "\"channelId\":\"\(ca)\",\"payload\":\(i)") }
        let close = try c.request("close", "\"channelId\":\"\(ca)\"")
        for i in 0..<3 { #expect(try a.expect("channel_message", ["channelId": ca])["payload"] as? Int == i) }
        try a.expect("channel_closed_notification", ["channelId": ca])
        for id in sends { try c.expect("channel_message_sent", replyTo: id, ["channelId": ca]) }
        try c.expect("channel_closed", replyTo: close, ["channelId": ca])
        for n in nodes {
            #expect(n.cb.metrics.all.first { $0.name == "cb_cross_node_lost_total" }?.value == 0)
            #expect(n.cb.metrics.all.first { $0.name == "cb_cluster_unavailable_total" }?.value == 0)
        }
    }

    @Test("the {cb} slot resharded under the nodes: a command answered ASK mid-migration runs on the importing master after ASKING; answered MOVED after the hand-over, it follows the new map")
    func rolesFollowReshard() throws {
        let servers = try ClusterRedisClusterTests.startCluster()
        defer { for s in servers { s.stop() } }
        let probes = try servers.map { try RedisProbe(port: $0.port) }
        let nodes = try zip(1...2, [IOBackendKind.uring, .epoll]).map { try node($0, seedPort: servers[0].port, backend: $1) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntilUp(nodes))
        var workers = try workers(on: nodes)
        // Where the roles live, and a master to move them to.
        let ranges = try #require(ClusterSlotRange.parse(try probes[0].call(["CLUSTER", "SLOTS"])))
        let slot = ClusterSlots.slot(of: Array("x:{cb}:y".utf8))
        let source = try #require(servers.firstIndex { server in ranges.contains { $0.port == server.port && $0.slots.contains(slot) } })
        let target = (source + 1) % 3
        let ids = try probes.map { ClusterRedisClusterTests.text(try $0.call(["CLUSTER", "MYID"])) }
        let redirectsBefore = nodes.map { metric($0.broker, "switchboard_cluster_redirects_total") }

        // Mid-migration: every key of the slot moved to the target, the slot not handed over.
        // The source answers ASK for each of them; the nodes' maps do not change.
        #expect(ClusterRedisClusterTests.text(try probes[target].call(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", ids[source]])) == "OK")
        #expect(ClusterRedisClusterTests.text(try probes[source].call(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", ids[target]])) == "OK")
        guard case .array(let keys) = try probes[source].call(["CLUSTER", "GETKEYSINSLOT", String(slot), "1000"]) else { throw TestClient.Failure.closed }
        #expect(keys.count >= 2, "the role's sorted set and its sequence at least: \(keys)")
        #expect(ClusterRedisClusterTests.text(try probes[source].call(["MIGRATE", "127.0.0.1", String(servers[target].port), "", "0", "5000", "KEYS"]
                                                                       + keys.map { ClusterRedisClusterTests.text($0) })) == "OK")
        let asked = try CBNodeClient(port: nodes[0].broker.port)
        try asked.register("worker")
        workers.append(asked)
        #expect(try workers[1].list("worker") == workers.map(\.connectionId), "read on the importing master after ASK")
        #expect(metric(nodes[0].broker, "switchboard_cluster_redirects_total") > redirectsBefore[0], "node 1's register followed ASK")
        #expect(metric(nodes[1].broker, "switchboard_cluster_redirects_total") > redirectsBefore[1], "node 2's list followed ASK")
        guard case .array(let left) = try probes[source].call(["CLUSTER", "GETKEYSINSLOT", String(slot), "1000"]) else { throw TestClient.Failure.closed }
        #expect(left.isEmpty, "nothing was written on the migrating master: \(left)")

        // The hand-over: the slot is the target's on every master. The nodes' maps still name
        // the source (no shard channel of theirs lives in this slot, so nothing tells them):
        // the next command is answered MOVED, the map is updated and the command runs there.
        let refreshesBefore = nodes.map { metric($0.broker, "switchboard_cluster_slot_map_refreshes_total") }
        for m in [target, 3 - source - target, source] {
            #expect(ClusterRedisClusterTests.text(try probes[m].call(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[target]])) == "OK")
        }
        let redirectsBeforeMoved = nodes.map { metric($0.broker, "switchboard_cluster_redirects_total") }
        let moved = try CBNodeClient(port: nodes[1].broker.port)
        try moved.register("worker")
        workers.append(moved)
        #expect(try workers[0].list("worker") == workers.map(\.connectionId), "registration order kept across the move")
        for n in 0..<2 {
            #expect(metric(nodes[n].broker, "switchboard_cluster_redirects_total") > redirectsBeforeMoved[n], "node \(n + 1) followed MOVED")
            #expect(waitUntil { metric(nodes[n].broker, "switchboard_cluster_slot_map_refreshes_total") > refreshesBefore[n] }, "node \(n + 1) read the map again")
        }
        // Every shard that ran a command after the hand-over has the slot's new master (each
        // shard keeps its own map): a second round of the same commands is not redirected.
        for w in workers { #expect(try w.list("worker") == workers.map(\.connectionId)) }
        let settled = nodes.map { metric($0.broker, "switchboard_cluster_redirects_total") }
        for w in workers { #expect(try w.list("worker") == workers.map(\.connectionId)) }
        #expect(nodes.map { metric($0.broker, "switchboard_cluster_redirects_total") } == settled, "the new map is used")
        guard case .array(let onTarget) = try probes[target].call(["CLUSTER", "GETKEYSINSLOT", String(slot), "1000"]) else { throw TestClient.Failure.closed }
        #expect(onTarget.count >= keys.count, "the roles' keys live on the target")
        for n in nodes { #expect(n.cb.metrics.all.first { $0.name == "cb_cluster_unavailable_total" }?.value == 0) }
    }
}

extension ClusterConnectionBrokerRedisClusterTests {
    @Test("the {nodes} slot resharded under the nodes: membership and inboxes follow it to the new master, no node is reported dead, every incarnation stays, a channel across nodes goes on",
          arguments: [IOBackendKind.uring, .epoll])
    func nodesSlotMoves(backend: IOBackendKind) throws {
        let servers = try ClusterRedisClusterTests.startCluster()
        defer { for s in servers { s.stop() } }
        let probes = try servers.map { try RedisProbe(port: $0.port) }
        let nodes = try (1...3).map { try node($0, seedPort: servers[0].port, backend: backend) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntilUp(nodes))
        let workers = try workers(on: nodes)
        let (a, b) = (workers[0], workers[1])
        let ab = try a.open(to: b)

        // Where membership and the inboxes live, and a master to move them to.
        let members = "switchboard:{nodes}:members", incarnations = "switchboard:{nodes}:incarnations"
        let ranges = try #require(ClusterSlotRange.parse(try probes[0].call(["CLUSTER", "SLOTS"])))
        let slot = ClusterSlots.slot(of: Array(members.utf8))
        let source = try #require(servers.firstIndex { server in ranges.contains { $0.port == server.port && $0.slots.contains(slot) } })
        let target = (source + 1) % 3
        let ids = try probes.map { ClusterRedisClusterTests.text(try $0.call(["CLUSTER", "MYID"])) }
        func hash(_ m: Int, _ key: String) -> [String: String] {
            guard case .array(let pairs)? = try? probes[m].call(["HGETALL", key]) else { return [:] }
            var map: [String: String] = [:]
            for i in stride(from: 0, to: pairs.count - 1, by: 2) { map[ClusterRedisClusterTests.text(pairs[i])] = ClusterRedisClusterTests.text(pairs[i + 1]) }
            return map
        }
        let before = hash(source, incarnations)
        #expect(before == Dictionary(uniqueKeysWithValues: nodes.enumerated().map { (String($0.offset + 1), String($0.element.broker.clusterIncarnation.current)) }),
                "one incarnation per process, whichever link announced it")
        func expiries(_ m: Int) -> [Int] {
            (1...3).map { n in
                guard case .bulkString(let b)? = try? probes[m].call(["ZSCORE", members, String(n)]) else { return 0 }
                return Int(Double(String(decoding: b, as: UTF8.self)) ?? 0)
            }
        }

        // The hand-over, keys and all (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on every
        // master, the source last). The source then drops the inboxes' shard subscriptions and
        // answers the next heartbeat MOVED: each node reads the map again and moves there.
        let movedAt = expiries(source).max() ?? 0
        #expect(ClusterRedisClusterTests.text(try probes[target].call(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", ids[source]])) == "OK")
        #expect(ClusterRedisClusterTests.text(try probes[source].call(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", ids[target]])) == "OK")
        guard case .array(let keys) = try probes[source].call(["CLUSTER", "GETKEYSINSLOT", String(slot), "1000"]) else { throw TestClient.Failure.closed }
        #expect(keys.map { ClusterRedisClusterTests.text($0) }.contains(members), "membership is in the slot: \(keys)")
        #expect(ClusterRedisClusterTests.text(try probes[source].call(["MIGRATE", "127.0.0.1", String(servers[target].port), "", "0", "5000", "KEYS"]
                                                                       + keys.map { ClusterRedisClusterTests.text($0) })) == "OK")
        for m in [target, 3 - source - target, source] {
            #expect(ClusterRedisClusterTests.text(try probes[m].call(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[target]])) == "OK")
        }
        // Every node heartbeats on the target (each expiry moved at least two heartbeats past
        // the hand-over), and heard of nobody's death meanwhile.
        #expect(waitUntil(timeoutMilliseconds: 15_000) { expiries(target).allSatisfy { $0 > movedAt + 200 } }, "\(expiries(target)) after \(movedAt)")
        #expect(nodes.map { metric($0.broker, "switchboard_cluster_node_deaths_total") } == [0, 0, 0], "nobody died")
        #expect(hash(target, incarnations) == before, "every incarnation stays")
        #expect(nodes.allSatisfy { metric($0.broker, "switchboard_cluster_members") == 3 })
        for n in 1...3 {
            #expect(waitUntil { (try? probes[target].shardSubscriberCount("switchboard:{nodes}:node:\(n)")) == 1 }, "node \(n)'s inbox on the new master")
        }
        // The channel across nodes goes on, both ways, through the inboxes on the new master.
        let sentA = try a.request("message", "\"channelId\":\"\(ab)\",\"payload\":\"after-a\"")
        #expect(try b.expect("channel_message", ["channelId": ab])["payload"] as? String == "after-a")
        try a.expect("channel_message_sent", replyTo: sentA, ["channelId": ab])
        let sentB = try b.request("message", "\"channelId\":\"\(ab)\",\"payload\":\"after-b\"")
        #expect(try a.expect("channel_message", ["channelId": ab])["payload"] as? String == "after-b")
        try b.expect("channel_message_sent", replyTo: sentB, ["channelId": ab])
        #expect(try workers[2].list("worker") == workers.map(\.connectionId), "every member listed")
        for n in nodes { #expect(n.cb.metrics.all.first { $0.name == "cb_cross_node_lost_total" }?.value == 0) }
    }
}
