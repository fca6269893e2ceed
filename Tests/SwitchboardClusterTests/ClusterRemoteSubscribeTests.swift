import Switchboard
import SwitchboardCluster
import SwitchboardIO
import SwitchboardRESP
import SwitchboardTestSupport
import Synchronization
import Testing

/// `Broker.subscribe`, `unsubscribe` and `subscriptions(of:)` on a socket of another node:
/// the request goes to that node's inbox, the answer comes back through the caller's.
@Suite("Cluster: subscribe and unsubscribe a socket of another node", .serialized)
struct ClusterRemoteSubscribeTests {
    static func metric(_ broker: Broker, _ name: String) -> Int {
        broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
    }

    static func node(_ id: Int, seedPort: Int, mode: ClusterRedisMode = .standalone, shards: Int = 2,
                     timeoutMilliseconds: Int = 2_000, _ log: TokenLog) throws -> Broker {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = shards
        configuration.io.tickMilliseconds = 10
        configuration.cluster.engine = .redis
        configuration.cluster.redisMode = mode
        configuration.cluster.redisURL = "redis://127.0.0.1:\(seedPort)"
        configuration.cluster.nodeID = id
        configuration.cluster.initialBackoffMilliseconds = 20
        configuration.cluster.maxBackoffMilliseconds = 200
        configuration.cluster.remoteCallTimeoutMilliseconds = timeoutMilliseconds
        let broker = Broker(configuration: configuration) { _ in TokenHandler(log) }
        try broker.start()
        return broker
    }

    /// Node 1 drives a socket of node 2 through every call; a publish from node 1 then
    /// reaches it only while it is subscribed. Both nodes' shards all take part (2 each).
    /// `subscribers(name)`: Redis's count of subscribers of a pub/sub channel (plain or sharded).
    func exercise(one: Broker, two: Broker, log: TokenLog, inbox: (Int) -> String, channel: (String) -> String,
                  subscribers: (String) -> Int64?) async throws {
        #expect(waitUntil(timeoutMilliseconds: 10_000) { subscribers(inbox(1)) == 1 && subscribers(inbox(2)) == 1 },
                "nodes 1 (answers) and 2 (requests) receive their inboxes")
        let client = try TestClient(port: two.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try client.upgrade(path: "/").status == 101)
        let id = try #require(log.ids.withLock { $0.first })
        #expect(id.node == 2)

        #expect(try await one.subscriptions(of: id) == [])
        #expect(try await one.subscribe(id, "room") == .subscribed)
        #expect(try await one.subscribe(id, "room") == .alreadySubscribed)
        #expect(try await one.subscribe(id, "hall") == .subscribed)
        #expect(try await one.subscriptions(of: id) == ["room", "hall"])
        #expect(try await two.subscriptions(of: id) == ["room", "hall"], "node 2 sees the same, locally")
        // One Redis: the SUBSCRIBE went before the answer on node 2's connection, so it is in
        // place already; Redis Cluster: on another master, so wait for it.
        #expect(waitUntil { subscribers(channel("room")) == 1 })
        #expect(one.publish("room", .text("to the room")) == .queued)
        #expect(try client.readFrame().text == "to the room")

        #expect(try await one.unsubscribe(id, "room") == true)
        #expect(try await one.unsubscribe(id, "room") == false)
        #expect(try await one.subscriptions(of: id) == ["hall"])
        #expect(one.publish("room", .text("nobody")) == .queued)
        #expect(one.publish("hall", .text("to the hall")) == .queued)
        #expect(try client.readFrame().text == "to the hall", "the room's message did not come")

        // A socket id whose shard node 2 does not have: as on one node.
        let noShard = SocketID(rawValue: UInt64(2) << 56 | UInt64(9) << 48 | 1)
        await #expect(throws: BrokerError.unknownShard) { try await one.subscribe(noShard, "room") }
        // A stale id (the socket closed): exact answers, as on one node.
        client.shutdownWrite()  // the server reads its end and closes the socket
        #expect(waitUntil { Self.metric(two, "switchboard_connections_open") == Self.metric(two, "switchboard_cluster_redis_connected") },
                "only the Redis connections are left")
        #expect(try await one.subscribe(id, "room") == .notFound)
        #expect(try await one.unsubscribe(id, "hall") == false)
        #expect(try await one.subscriptions(of: id) == [])
        #expect(Self.metric(one, "switchboard_cluster_remote_calls_total") == 12)
        #expect(Self.metric(one, "switchboard_cluster_remote_call_timeouts_total") == 0)
    }

    @Test("one Redis: subscribe, unsubscribe, subscriptions(of:) from node 1 on node 2's socket; exact results")
    func standalone() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let (log1, log2) = (TokenLog(), TokenLog())
        let one = try Self.node(1, seedPort: redis.port, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, seedPort: redis.port, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probe = try RedisProbe(port: redis.port)
        #expect(try probe.subscriberCount("switchboard:ch:room") == 0)
        try await exercise(one: one, two: two, log: log2, inbox: { "switchboard:node:\($0)" }, channel: { "switchboard:ch:\($0)" }) {
            try? probe.subscriberCount($0)
        }
    }

    @Test("Redis Cluster mode (3 masters): the same calls through the {nodes} master's inboxes")
    func redisCluster() async throws {
        let servers = try ClusterRedisClusterTests.startCluster()
        defer { for s in servers { s.stop() } }
        let (log1, log2) = (TokenLog(), TokenLog())
        let one = try Self.node(1, seedPort: servers[0].port, mode: .cluster, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, seedPort: servers[0].port, mode: .cluster, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probes = try servers.map { try RedisProbe(port: $0.port) }
        // Every shard has read the slot map (it links to the other masters only from it): the
        // socket's shard answers through the {nodes} master it names.
        for node in [one, two] {
            #expect(waitUntil(timeoutMilliseconds: 10_000) { Self.metric(node, "switchboard_cluster_redis_connected") == 6 }, "2 shards x 3 masters")
        }
        // Sharded inbox: counted by PUBSUB SHARDNUMSUB on the master of the {nodes} slot.
        try await exercise(one: one, two: two, log: log2, inbox: { "switchboard:{nodes}:node:\($0)" }, channel: { "switchboard:{c:\($0)}:pub" }) { name in
            probes.compactMap { try? $0.shardSubscriberCount(name) }.max()
        }
    }

    @Test("node down: nodeUnavailable at once; node taking the request but silent: timedOut after cluster_remote_call_timeout_ms; no Redis: clusterUnavailable")
    func failures() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let one = try Self.node(1, seedPort: redis.port, shards: 1, timeoutMilliseconds: 300, TokenLog())
        defer { one.shutdown(graceMilliseconds: 200) }
        #expect(waitUntil { Self.metric(one, "switchboard_cluster_redis_connected") == 1 })

        // Node 3 is not up: nobody holds its inbox, PUBLISH counts 0 receivers.
        let onNode3 = SocketID(rawValue: UInt64(3) << 56 | 5)
        await #expect(throws: BrokerError.nodeUnavailable) { try await one.subscribe(onNode3, "room") }
        await #expect(throws: BrokerError.nodeUnavailable) { try await one.subscriptions(of: onNode3) }
        #expect(Self.metric(one, "switchboard_cluster_remote_calls_node_down_total") == 2)

        // A "node 4" that takes its inbox and never answers: the test's own subscriber, which
        // also checks the request's exact bytes.
        let silent = try RedisProbe(port: redis.port)
        _ = try silent.call(["SUBSCRIBE", "switchboard:node:4"])
        let onNode4 = SocketID(rawValue: UInt64(4) << 56 | UInt64(1) << 48 | 7)
        let started = ContinuousClock.now
        await #expect(throws: BrokerError.timedOut) { try await one.unsubscribe(onNode4, "room") }
        #expect(ContinuousClock.now - started >= .milliseconds(300), "not before the deadline")
        #expect(Self.metric(one, "switchboard_cluster_remote_call_timeouts_total") == 1)
        // The probe speaks RESP2: the pushed message is an array (message, channel, payload).
        let pushed = try silent.call(["PING"])
        let items: [RESPValue]
        switch pushed {
        case .array(let a), .push(let a): items = a
        default: items = []
        }
        guard items.count == 3, case .bulkString(let request) = items[2] else {
            Issue.record("the silent node received no request")
            return
        }
        // q, u (unsubscribe), the socket id, node 1, shard 0, call 3 (the third call of shard 0), "room".
        let expected: [UInt8] = [0x71, 0x75, 4, 1, 0, 0, 0, 0, 0, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3] + Array("room".utf8)
        #expect(request == expected)

        redis.stop()
        #expect(waitUntil { Self.metric(one, "switchboard_cluster_redis_connected") == 0 })
        await #expect(throws: BrokerError.clusterUnavailable) { try await one.subscribe(onNode3, "room") }
    }
}
