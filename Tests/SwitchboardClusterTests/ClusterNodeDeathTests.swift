import SwitchboardIO  // monotonicMilliseconds
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Membership faults with three `switchboard-echo` processes over a real redis-server: a node
/// killed, restarted, paused. Every `/direct` socket gets `died:N` when its shard hears that
/// node N died (`WorkerHandler.handleClusterNodeDied`), so the tests see the event itself,
/// on each shard, and time it.

@Suite("Cluster membership: node death", .serialized)
struct ClusterNodeDeathTests {
    static let heartbeatMilliseconds = 100
    static let nodeTTLMilliseconds = 600

    func startNode(_ id: Int, redisPort: Int, shards: Int, backend: String, ttl: Int = nodeTTLMilliseconds) throws -> NodeProcess {
        try startClusterEchoNode(id, redisPort: redisPort, shards: shards, backend: backend, settings: [
            "cluster_heartbeat_ms=\(Self.heartbeatMilliseconds)", "cluster_node_ttl_ms=\(ttl)", "cluster_redis_connect_timeout_ms=200",
        ])
    }

    /// A `/direct` socket and its id.
    func direct(_ node: NodeProcess) throws -> (ws: TestClient, id: UInt64) {
        let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 15_000)
        #expect(try ws.upgrade(path: "/direct").status == 101)
        try ws.sendText("whoami")
        let answer = try ws.readFrame().text
        return (ws, try #require(UInt64(answer.dropFirst("id:".count)), "\(answer)"))
    }

    func everyoneSees(_ nodes: [NodeProcess], members: Int) -> Bool {
        waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { (try? $0.metric("switchboard_cluster_members")) == members } }
    }

    @Test("SIGKILL: every shard of every other node hears nodeDied within cluster_node_ttl_ms + cluster_heartbeat_ms")
    func killedNode() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try [(1, 2, "uring"), (2, 1, "epoll"), (3, 1, "uring")].map {
            try startNode($0.0, redisPort: redis.port, shards: $0.1, backend: $0.2)
        }
        defer { for n in nodes { n.stop() } }
        #expect(everyoneSees(nodes, members: 3), "three members")
        // One socket on each shard of A (fewest connections first), one on B.
        let watchers = try [direct(nodes[0]), direct(nodes[0]), direct(nodes[1])]
        #expect(Set(watchers[..<2].map { ($0.id >> 48) & 0xFF }) == [0, 1], "one watcher per shard of A")

        let killedAt = monotonicMilliseconds()
        kill(nodes[2].process.processIdentifier, SIGKILL)
        nodes[2].process.waitUntilExit()
        let bound = Int64(Self.nodeTTLMilliseconds + Self.heartbeatMilliseconds)
        for watcher in watchers {
            #expect(try watcher.ws.readFrame().text == "died:3")
            let elapsed = monotonicMilliseconds() - killedAt
            print("node 3 seen dead after \(elapsed) ms (bound \(bound) ms)")
            // Not before its membership could expire (its last renewal was one heartbeat
            // before the kill, or a few when a loaded machine ran its ticks late: half the TTL
            // leaves room for that), and within the bound (plus slack for a loaded machine).
            #expect(elapsed >= Int64(Self.nodeTTLMilliseconds / 2), "\(elapsed) ms")
            #expect(elapsed <= bound + 1_500, "\(elapsed) ms, bound \(bound) ms")
        }
        #expect(everyoneSees(Array(nodes[..<2]), members: 2))
        for node in nodes[..<2] {
            #expect(try node.metric("switchboard_cluster_node_deaths_total") == 1, "one death, reported once")
        }
        try nodes[0].readError { $0.contains("cluster: node 3 died") }
        // Nothing else: the survivors' sockets hear no other death.
        try watchers[2].ws.sendText("whoami")
        #expect(try watchers[2].ws.readFrame().text == "id:\(watchers[2].id)")
    }

    @Test("a node restarted within its TTL is a new incarnation: its old sockets are reported dead at once")
    func restartedWithinTTL() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let ttl = 20_000  // far longer than the test waits: only the incarnation can tell
        var nodes = try [(1, "epoll"), (2, "uring")].map { try startNode($0.0, redisPort: redis.port, shards: 1, backend: $0.1, ttl: ttl) }
        defer { for n in nodes { n.stop() } }
        #expect(everyoneSees(nodes, members: 2))
        let watcher = try direct(nodes[0])
        let start = monotonicMilliseconds()
        nodes[1].stop()
        nodes[1] = try startNode(2, redisPort: redis.port, shards: 1, backend: "uring", ttl: ttl)
        #expect(try watcher.ws.readFrame().text == "died:2")
        let elapsed = monotonicMilliseconds() - start
        #expect(elapsed < Int64(ttl / 2), "seen by its incarnation, not its expiry: \(elapsed) ms")
        #expect(everyoneSees(nodes, members: 2))
        #expect(try nodes[0].metric("switchboard_cluster_node_deaths_total") == 1)
    }

    @Test("a node paused longer than its TTL (SIGSTOP): the others declare it dead, and it learns it when it resumes")
    func pausedNode() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try [(1, "uring"), (2, "epoll")].map { try startNode($0.0, redisPort: redis.port, shards: 1, backend: $0.1) }
        defer {
            kill(nodes[1].process.processIdentifier, SIGCONT)
            for n in nodes { n.stop() }
        }
        #expect(everyoneSees(nodes, members: 2))
        let watchers = try nodes.map { try direct($0) }
        kill(nodes[1].process.processIdentifier, SIGSTOP)
        #expect(try watchers[0].ws.readFrame().text == "died:2", "A declares the paused node dead")
        kill(nodes[1].process.processIdentifier, SIGCONT)
        // B's own sockets hear that the others dropped them, and B rejoins as a new incarnation.
        #expect(try watchers[1].ws.readFrame().text == "died:2", "B hears its own death")
        #expect(everyoneSees(nodes, members: 2), "B is a member again")
        #expect(try nodes[1].metric("switchboard_cluster_declared_dead_total") == 1)
        try nodes[1].readError { $0.contains("declared node 2 (this one) dead") }
        // A saw B die once: B's new incarnation after A had already dropped it is no second death.
        #expect(try nodes[0].metric("switchboard_cluster_node_deaths_total") == 1)
        try watchers[0].ws.sendText("whoami")
        #expect(try watchers[0].ws.readFrame().text == "id:\(watchers[0].id)")
    }
}
