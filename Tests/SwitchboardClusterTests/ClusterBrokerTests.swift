import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Synchronization
import Testing

/// Subscribes every WebSocket to `news` on upgrade; a message `pub:TEXT` publishes TEXT to
/// `news` from the socket's shard and records what `ShardContext.publish` answered.
final class NewsLog: Sendable {
    let results = Mutex<[PublishResult]>([])
    let ids = Mutex<[SocketID]>([])
}

final class NewsHandler: WorkerHandler {
    let context: ShardContext
    let log: NewsLog
    init(_ context: ShardContext, log: NewsLog) {
        self.context = context
        self.log = log
    }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        #expect(context.subscribe(socketId, "news") == .subscribed)
        log.ids.withLock { $0.append(socketId) }
        return .accept()
    }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message, text.hasPrefix("pub:") else { return }
        let result = context.publish("news", .text(String(text.dropFirst(4))))
        log.results.withLock { $0.append(result) }
    }
}

@Suite("Cluster engine behind the broker API (one process, real redis-server)", .serialized)
struct ClusterBrokerTests {
    func metric(_ broker: Broker, _ name: String) -> Int {
        broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
    }

    @Test("publish from a shard and from any thread goes through Redis; refused at once while Redis is down",
          arguments: [IOBackendKind.uring, .epoll])
    func publishPaths(backend: IOBackendKind) throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 2
        configuration.io.backend = backend
        configuration.io.tickMilliseconds = 10
        configuration.cluster.engine = .redis
        configuration.cluster.redisURL = "redis://localhost:\(redis.port)"  // a name, resolved at start
        configuration.cluster.nodeID = 7
        configuration.cluster.initialBackoffMilliseconds = 20
        let log = NewsLog()
        let broker = Broker(configuration: configuration) { NewsHandler($0, log: log) }
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 500) }
        #expect(broker.backend == backend)
        #expect(waitUntil { metric(broker, "switchboard_cluster_redis_connected") == 2 }, "one connection per shard")

        let clients = try (0..<2).map { _ in try TestClient(port: broker.port, receiveTimeoutMilliseconds: 10_000) }
        for c in clients { #expect(try c.upgrade(path: "/").status == 101) }
        #expect(Set(log.ids.withLock { $0 }.map(\.shard)) == [0, 1], "one subscriber per shard")
        #expect(log.ids.withLock { $0 }.allSatisfy { $0.node == 7 }, "socket ids carry cluster_node_id")
        let probe = try RedisProbe(port: redis.port)
        #expect(waitUntil { (try? probe.subscriberCount("switchboard:ch:news")) == 2 })

        #expect(broker.publish(ChannelName("news"), SocketMessage.text("from any thread")) == .queued)
        for c in clients { #expect(try c.readFrame().text == "from any thread") }
        try clients[0].sendText("pub:from a shard")
        for c in clients { #expect(try c.readFrame().text == "from a shard") }
        #expect(log.results.withLock { $0 } == [.accepted(offset: nil)])
        #expect(metric(broker, "switchboard_cluster_publishes_total") == 2)
        #expect(metric(broker, "switchboard_cluster_deliveries_total") == 4, "two messages, each to both shards")

        redis.stop()
        #expect(waitUntil { metric(broker, "switchboard_cluster_redis_connected") == 0 })
        try clients[1].sendText("pub:during the outage")
        #expect(waitUntil { log.results.withLock { $0.count } == 2 })
        #expect(log.results.withLock { $0.last } == .refused, "the handler learns it at once")
        #expect(broker.publish(ChannelName("news"), SocketMessage.text("any thread, outage")) == .queued, "reached a shard; refused and counted there")
        #expect(waitUntil { metric(broker, "switchboard_cluster_publishes_unavailable_total") == 2 })
        // Counted by the channel engine right after the engine refused: wait for it too.
        #expect(waitUntil { metric(broker, "switchboard_publishes_refused_total") == 2 })
    }
}

@Suite("Cluster membership (heartbeats in Redis)", .serialized)
struct ClusterMembershipTests {
    func node(_ id: Int, redisPort: Int) throws -> Broker {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 1
        configuration.io.tickMilliseconds = 10
        configuration.joinCluster(redisPort: redisPort, nodeID: id)
        configuration.cluster.heartbeatMilliseconds = 50
        configuration.cluster.nodeTTLMilliseconds = 300
        let broker = Broker(configuration: configuration) { _ in DefaultWorkerHandler() }
        try broker.start()
        return broker
    }

    /// Polls an async question until it has the expected answer (bounded).
    func eventually(_ expected: [Int], timeoutMilliseconds: Int = 5_000, _ ask: () async throws -> [Int]) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while ContinuousClock.now < deadline {
            if (try? await ask()) == expected { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    @Test("nodes announce themselves; a stopped node drops out within the TTL; no Redis, no answer")
    func heartbeats() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let one = try node(1, redisPort: redis.port)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try node(2, redisPort: redis.port)
        #expect(await eventually([1, 2]) { try await one.clusterMembers() })
        #expect(await eventually([1, 2]) { try await two.clusterMembers() }, "the same view from both")

        two.shutdown(graceMilliseconds: 200)  // its heartbeats stop
        let stopped = ContinuousClock.now
        #expect(await eventually([1]) { try await one.clusterMembers() })
        let gone = ContinuousClock.now - stopped
        // Expired at most one TTL (300 ms) after its last heartbeat; generous for a loaded machine
        // (2.9 s seen with the other cluster suites running in parallel on 2 busy cores).
        #expect(gone < .milliseconds(4_000), "\(gone)")
        // Node 1 keeps renewing: a member at every look over more than three TTLs.
        let watch = ContinuousClock.now
        while ContinuousClock.now - watch < .milliseconds(1_000) {
            #expect(try await one.clusterMembers() == [1])
            try await Task.sleep(for: .milliseconds(50))
        }
        let probe = try RedisProbe(port: redis.port)
        #expect(try probe.call(["ZCARD", "switchboard:members"]) == .integer(1))

        redis.stop()
        #expect(waitUntil { one.metricSamples().first { $0.name == "switchboard_cluster_redis_connected" }?.value == 0 })
        await #expect(throws: BrokerError.clusterUnavailable) { try await one.clusterMembers() }
    }
}

/// Records each message with the token it came with, and the socket ids.
final class TokenLog: Sendable {
    let seen = Mutex<[(String, [UInt8]?)]>([])
    let ids = Mutex<[SocketID]>([])
}

final class TokenHandler: WorkerHandler {
    let log: TokenLog
    init(_ log: TokenLog) { self.log = log }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        log.ids.withLock { $0.append(socketId) }
        return .accept()
    }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        if case .text(let text) = message { log.seen.withLock { $0.append((text, token)) } }
    }
}

@Suite("Cluster: addressed calls between in-process nodes", .serialized)
struct ClusterAddressedTests {
    @Test("setToken, send and close on a socket of another node")
    func tokenAcrossNodes() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        func node(_ id: Int, _ log: TokenLog) throws -> Broker {
            var configuration = BrokerConfiguration()
            configuration.host = "127.0.0.1"
            configuration.port = 0
            configuration.io.shardCount = 1
            configuration.cluster.engine = .redis
            configuration.cluster.redisURL = "redis://127.0.0.1:\(redis.port)"
            configuration.cluster.nodeID = id
            let broker = Broker(configuration: configuration) { _ in TokenHandler(log) }
            try broker.start()
            return broker
        }
        let (log1, log2) = (TokenLog(), TokenLog())
        let one = try node(1, log1)
        defer { one.shutdown(graceMilliseconds: 200) }
        let two = try node(2, log2)
        defer { two.shutdown(graceMilliseconds: 200) }
        let probe = try RedisProbe(port: redis.port)
        #expect(waitUntil { (try? probe.subscriberCount("switchboard:node:2")) == 1 })

        let client = try TestClient(port: two.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try client.upgrade(path: "/").status == 101)
        let id = try #require(log2.ids.withLock { $0.first })
        #expect(id.node == 2)

        // From node 1's any-thread API: token, then a message, in that order through one shard.
        #expect(one.setToken(id, Array("tok".utf8)) == .queued)
        #expect(one.send(id, .text("hello")) == .queued)
        #expect(try client.readFrame().text == "hello")
        try client.sendText("ping")
        #expect(waitUntil { log2.seen.withLock { $0.count } == 1 })
        #expect(log2.seen.withLock { $0.first.map { $0.0 == "ping" && $0.1 == Array("tok".utf8) } } == true, "the token set from node 1")
        #expect(one.setToken(id, nil) == .queued)
        #expect(one.send(id, .text("cleared")) == .queued)
        #expect(try client.readFrame().text == "cleared")
        try client.sendText("pong")
        #expect(waitUntil { log2.seen.withLock { $0.count } == 2 })
        #expect(log2.seen.withLock { $0.last.map { $0.1 == nil } } == true)
        #expect(one.close(id, code: .goingAway, reason: "bye") == .queued)
        let close = try client.readFrame()
        #expect(close.opcode == 8 && close.closeCode == 1001)
    }
}
