import Switchboard
import SwitchboardIO
import SwitchboardRESP
import SwitchboardTestSupport
import Synchronization
import Testing

/// Every WebSocket subscribes to `news` on upgrade; every `handleChannelGap` is recorded.
final class GapLog: Sendable {
    let gaps = Mutex<[(channel: String, recovered: Bool, subscribers: Int)]>([])
    var all: [String] { gaps.withLock { $0.map { "\($0.channel):\($0.recovered):\($0.subscribers)" } } }
}

final class GapHandler: WorkerHandler {
    let context: ShardContext
    let log: GapLog
    init(_ context: ShardContext, _ log: GapLog) {
        self.context = context
        self.log = log
    }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        #expect(context.subscribe(socketId, "news") == .subscribed)
        return .accept()
    }
    func handleChannelGap(_ channel: ChannelName, recovered: Bool, subscribers: [SocketID]) {
        #expect(context.isOnShard)
        log.gaps.withLock { $0.append((String(decoding: channel.bytes, as: UTF8.self), recovered, subscribers.count)) }
    }
}

/// Recovery of a channel's missed messages from its history in Redis, after the subscribing
/// node's Redis connection was lost (one Redis, in-process nodes).
@Suite("Cluster: channel recovery from Redis's history", .serialized)
struct ClusterRecoveryTests {
    static func metric(_ broker: Broker, _ name: String) -> Int {
        broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
    }

    /// `backoffMilliseconds`: the subscribing node's first reconnect delay (jitter takes up
    /// to half of it off), long enough for the test to publish while it is away.
    static func node(_ id: Int, redisPort: Int, backoffMilliseconds: Int = 20, historySize: Int = 100,
                     recoveryMaxMessages: Int = 1_000, _ log: GapLog) throws -> Broker {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 1
        configuration.io.tickMilliseconds = 10
        configuration.cluster.engine = .redis
        configuration.cluster.redisURL = "redis://127.0.0.1:\(redisPort)"
        configuration.cluster.nodeID = id
        configuration.cluster.historySize = historySize
        configuration.cluster.recoveryMaxMessages = recoveryMaxMessages
        configuration.cluster.initialBackoffMilliseconds = backoffMilliseconds
        configuration.cluster.maxBackoffMilliseconds = max(backoffMilliseconds, 200)
        let broker = Broker(configuration: configuration) { GapHandler($0, log) }
        try broker.start()
        return broker
    }

    /// Drops node `node`'s Redis connection (shard 0) from the server side.
    static func killConnection(of node: Int, _ probe: RedisProbe) throws {
        let list = ClusterRedisClusterTests.text(try probe.call(["CLIENT", "LIST"]))
        let line = try #require(list.split(separator: "\n").first { $0.contains("name=switchboard-node\(node)-shard0 ") })
        let id = try #require(line.split(separator: " ").first { $0.hasPrefix("id=") }?.dropFirst(3))
        #expect(try probe.call(["CLIENT", "KILL", "ID", String(id)]) == .integer(1))
    }

    func texts(_ client: TestClient, _ count: Int) throws -> [String] {
        try (0..<count).map { _ in try client.readFrame().text }
    }

    func publish(_ broker: Broker, _ range: ClosedRange<Int>) {
        for i in range { #expect(broker.publish("news", .text("m\(i)")) == .queued) }
    }

    /// Node 1 publishes, node 2's socket subscribes; returns node 2's client once it has m1...m3.
    func start(_ one: Broker, _ two: Broker, _ probe: RedisProbe) throws -> TestClient {
        #expect(waitUntil { Self.metric(one, "switchboard_cluster_redis_connected") == 1 && Self.metric(two, "switchboard_cluster_redis_connected") == 1 })
        let client = try TestClient(port: two.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try client.upgrade(path: "/").status == 101)
        #expect(waitUntil { (try? probe.subscriberCount("switchboard:ch:news")) == 1 })
        publish(one, 1...3)
        #expect(try texts(client, 3) == ["m1", "m2", "m3"])
        return client
    }

    func offset(_ probe: RedisProbe) -> String {
        ClusterRedisClusterTests.text(try? probe.call(["HGET", "switchboard:{news}:meta", "offset"]))
    }

    @Test("a brief drop of the subscribing node's Redis connection: what it missed arrives from the history, in order, once, before newer messages")
    func briefDropRecovered() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let (log1, log2) = (GapLog(), GapLog())
        let one = try Self.node(1, redisPort: redis.port, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, redisPort: redis.port, backoffMilliseconds: 3_000, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probe = try RedisProbe(port: redis.port)
        let client = try start(one, two, probe)

        try Self.killConnection(of: 2, probe)
        #expect(waitUntil { Self.metric(two, "switchboard_cluster_redis_connected") == 0 })
        publish(one, 4...10)
        #expect(waitUntil { offset(probe) == "10" })
        // The reconnect waits 1.5 to 3 s: m4...m10 were published while node 2 was away.
        try #require(Self.metric(two, "switchboard_cluster_redis_connected") == 0, "node 2 came back before the publishes ended (machine too slow for this test)")

        #expect(try texts(client, 7) == (4...10).map { "m\($0)" }, "read back from the history, in order")
        #expect(log2.all == ["news:true:1"])
        publish(one, 11...12)
        #expect(try texts(client, 2) == ["m11", "m12"], "then the new ones, nothing twice")
        #expect(Self.metric(two, "switchboard_cluster_channel_gaps_recovered_total") == 1)
        #expect(Self.metric(two, "switchboard_cluster_messages_recovered_total") == 7)
        #expect(Self.metric(two, "switchboard_cluster_channel_gaps_unrecovered_total") == 0)
        #expect(log1.all.isEmpty, "the publisher's node has no subscriber")
    }

    @Test("history shorter than the gap, or the gap over cluster_recovery_max_messages: recovered: false, then the new messages",
          arguments: [(historySize: 3, maxMessages: 1_000, overLimit: 0), (historySize: 100, maxMessages: 5, overLimit: 1)])
    func gapNotRecoverable(historySize: Int, maxMessages: Int, overLimit: Int) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let (log1, log2) = (GapLog(), GapLog())
        let one = try Self.node(1, redisPort: redis.port, historySize: historySize, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, redisPort: redis.port, backoffMilliseconds: 3_000, recoveryMaxMessages: maxMessages, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probe = try RedisProbe(port: redis.port)
        let client = try start(one, two, probe)

        try Self.killConnection(of: 2, probe)
        #expect(waitUntil { Self.metric(two, "switchboard_cluster_redis_connected") == 0 })
        publish(one, 4...10)
        #expect(waitUntil { offset(probe) == "10" })
        try #require(Self.metric(two, "switchboard_cluster_redis_connected") == 0, "node 2 came back before the publishes ended (machine too slow for this test)")

        #expect(waitUntil(timeoutMilliseconds: 10_000) { log2.all == ["news:false:1"] }, "\(log2.all)")
        publish(one, 11...11)
        #expect(try client.readFrame().text == "m11", "nothing of the lost range, the new message next")
        #expect(Self.metric(two, "switchboard_cluster_channel_gaps_unrecovered_total") == 1)
        #expect(Self.metric(two, "switchboard_cluster_recoveries_over_limit_total") == overLimit)
        #expect(Self.metric(two, "switchboard_cluster_messages_recovered_total") == 0)
    }

    @Test("a gap in the offsets while subscribed: read back from the history before the message that showed it; a hole the history cannot fill: recovered: false")
    func offsetGapWhileSubscribed() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let (log1, log2) = (GapLog(), GapLog())
        let one = try Self.node(1, redisPort: redis.port, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, redisPort: redis.port, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probe = try RedisProbe(port: redis.port)
        let client = try start(one, two, probe)
        let epoch = ClusterRedisClusterTests.text(try probe.call(["HGET", "switchboard:{news}:meta", "epoch"]))
        #expect(!epoch.isEmpty)

        // Offset 4 is stored but never published (as a publish lost on its way would be).
        #expect(try probe.call(["HINCRBY", "switchboard:{news}:meta", "offset", "1"]) == .integer(4))
        _ = try probe.call(["RPUSH", "switchboard:{news}:history", "\(epoch):4:tm4-stored"])
        publish(one, 5...5)
        #expect(try texts(client, 2) == ["m4-stored", "m5"], "the hole first, then the message that showed it")
        #expect(log2.all == ["news:true:1"])
        // The read ran after m5 was published: it gave m4 and m5; the m5 that arrived live
        // (held while the read was in flight) was not delivered twice.
        #expect(Self.metric(two, "switchboard_cluster_messages_recovered_total") == 2)

        // Offset 6 is neither published nor stored: the history cannot fill it.
        #expect(try probe.call(["HINCRBY", "switchboard:{news}:meta", "offset", "1"]) == .integer(6))
        publish(one, 7...8)
        #expect(try texts(client, 2) == ["m7", "m8"], "the next messages, nothing invented")
        #expect(log2.all == ["news:true:1", "news:false:1"])
        #expect(Self.metric(two, "switchboard_cluster_channel_gaps_unrecovered_total") == 1)
    }

    @Test("Redis restarted mid-traffic: the stream's epoch is gone, the subscribers' handler hears recovered: false once; new messages follow")
    func redisRestartNotRecovered() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let (log1, log2) = (GapLog(), GapLog())
        let one = try Self.node(1, redisPort: redis.port, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try Self.node(2, redisPort: redis.port, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let client = try start(one, two, try RedisProbe(port: redis.port))

        redis.stop()
        #expect(waitUntil { Self.metric(one, "switchboard_cluster_redis_connected") == 0 && Self.metric(two, "switchboard_cluster_redis_connected") == 0 })
        #expect(one.publish("news", .text("lost")) == .queued, "refused on the shard, counted")
        let again = try RedisServer(port: redis.port)
        defer { again.stop() }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { Self.metric(one, "switchboard_cluster_redis_connected") == 1 && Self.metric(two, "switchboard_cluster_redis_connected") == 1 })
        #expect(waitUntil { log2.all == ["news:false:1"] }, "\(log2.all)")
        let probe = try RedisProbe(port: again.port)
        #expect(waitUntil { (try? probe.subscriberCount("switchboard:ch:news")) == 1 })
        publish(one, 4...5)
        #expect(try texts(client, 2) == ["m4", "m5"], "a new epoch, offsets 1 and 2")
        #expect(log2.all == ["news:false:1"], "reported once: the new epoch's messages are no second gap")
        #expect(Self.metric(two, "switchboard_cluster_channel_gaps_unrecovered_total") == 1)
        #expect(Self.metric(one, "switchboard_cluster_publishes_unavailable_total") == 1)
    }
}
