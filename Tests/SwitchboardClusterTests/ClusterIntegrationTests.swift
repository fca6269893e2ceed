import Foundation  // Thread: the steady publisher
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three `switchboard-echo` processes over one real redis-server (both started here, on
/// ephemeral ports, stopped at the end): `/broadcast/room` sockets subscribe on upgrade and
/// publish what they send, so the channel spans the three nodes.
@Suite("Cluster over Redis: three nodes", .serialized)
struct ClusterIntegrationTests {
    static let channel = "/broadcast/room"
    static let redisChannel = "switchboard:ch:/broadcast/room"

    func startNode(_ id: Int, redisPort: Int, shards: Int, backend: String) throws -> NodeProcess {
        let node = try startClusterEchoNode(id, redisPort: redisPort, shards: shards, backend: backend)
        #expect(node.errorText.contains("shards (\(backend))"), "runs on \(backend)")
        return node
    }

    func subscriber(_ node: NodeProcess) throws -> TestClient {
        let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try ws.upgrade(path: Self.channel).status == 101)
        return ws
    }

    @Test("Redis killed and restarted under a steady publisher: one sequence everywhere, every publish accounted for")
    func restartUnderTraffic() throws {
        var redis = try RedisServer()
        defer { redis.stop() }
        let redisPort = redis.port
        let nodes = try (0..<3).map { try startNode($0 + 1, redisPort: redisPort, shards: 1, backend: ["uring", "epoll", "uring"][$0]) }
        defer { for n in nodes { n.stop() } }
        let subscribers = try nodes.map { try subscriber($0) }
        let publisher = try subscriber(nodes[0])
        let probe = try RedisProbe(port: redisPort)
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == 3 })

        // A steady publisher on node A (one message per millisecond, paced, not waited on)
        // while Redis is killed and started again on the same port.
        let sent = 1_500
        let senderDone = DispatchSemaphore(value: 0)
        let sender = Thread {
            for i in 0..<sent { try? publisher.sendText("m-\(i)"); usleep(1_000) }
            senderDone.signal()
        }
        sender.start()
        usleep(300_000)
        redis.stop()
        usleep(300_000)
        redis = try RedisServer(port: redisPort)
        let probe2 = try RedisProbe(port: redisPort)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { (try? probe2.subscriberCount(Self.redisChannel)) == 3 }, "resubscribed")
        // The sender's pace stretches on a loaded machine (1,500 sleeps of at least 1 ms): the
        // accounting is awaited once every message is written, not from a fixed start.
        #expect(senderDone.wait(timeout: .now() + 120) == .success, "the steady publisher finished")
        // Every publish is accounted for on A: sent to Redis, or refused at once. Every other
        // outcome a publish can have is read too, so a failure says where the rest went.
        func counters() -> [String: Int] {
            let names = ["publishes", "publishes_unavailable", "publishes_over_limit", "publish_errors", "publishes_unconfirmed"]
            return Dictionary(uniqueKeysWithValues: names.map { ($0, (try? nodes[0].metric("switchboard_cluster_\($0)_total")) ?? -1) })
        }
        let accounted = waitUntil(timeoutMilliseconds: 20_000) {
            let c = counters()
            return c["publishes"]! + c["publishes_unavailable"]! == sent
        }
        #expect(accounted, "every publish sent to Redis or refused at once, of \(sent): \(counters()) (switchboard_publishes_total \((try? nodes[0].metric("switchboard_publishes_total")) ?? -1))")
        // 1,500 publishes are far below any limit (4,096 pending, a 4 MiB send queue): one that
        // met a connection the shard was already closing (Redis's EOF read in the same turn)
        // was counted as over the limit before `OutboundConnection.isConnected` saw the close.
        #expect(counters()["publishes_over_limit"] == 0, "refused in the outage as unavailable, not over a limit")
        let refused = try nodes[0].metric("switchboard_cluster_publishes_unavailable_total")
        let toRedis = try nodes[0].metric("switchboard_cluster_publishes_total")
        #expect(refused > 0, "some publishes fell in the outage")
        try publisher.sendText("END")
        var sequences: [[Int]] = []
        for ws in subscribers + [publisher] {
            var seen: [Int] = []
            while true {
                let text = try ws.readFrame().text
                if text == "END" { break }
                seen.append(try #require(Int(text.dropFirst(2))))
            }
            sequences.append(seen)
        }
        // Each socket: in publish order, no duplicate, at most what reached Redis, the end
        // of the traffic included.
        for s in sequences {
            #expect(zip(s, s.dropFirst()).allSatisfy { $0 < $1 }, "in publish order, no duplicate")
            #expect(s.count <= toRedis && s.last == sent - 1)
        }
        // One gap per socket: the outage. Nodes resubscribe one by one when Redis is back, so
        // what was published between two nodes' resubscriptions reached only the first (its
        // gap is visible in the offsets). Before the outage, and once every node was back,
        // every socket saw exactly the same messages.
        func gap(_ s: [Int]) -> (lastBefore: Int, firstAfter: Int)? {
            zip(s, s.dropFirst()).first { $1 != $0 + 1 }.map { ($0.0, $0.1) }
        }
        let gaps = sequences.compactMap(gap)
        #expect(gaps.count == sequences.count, "every socket missed the outage's messages")
        let allBefore = gaps.map(\.lastBefore).min() ?? 0
        let allAfter = gaps.map(\.firstAfter).max() ?? 0
        for s in sequences {
            #expect(s.filter { $0 <= allBefore } == Array(0...allBefore), "identical before the outage")
            #expect(s.filter { $0 >= allAfter } == Array(allAfter..<sent), "identical once all were back")
            if let g = gap(s) { #expect(zip(s.drop { $0 <= g.lastBefore }, s.drop { $0 <= g.lastBefore }.dropFirst()).allSatisfy { $1 == $0 + 1 }, "one gap only") }
        }
    }

    @Test("send and close to a socket of another node go through its node's inbox")
    func addressedAcrossNodes() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try (0..<2).map { try startNode($0 + 1, redisPort: redis.port, shards: 2, backend: ["epoll", "uring"][$0]) }
        defer { for n in nodes { n.stop() } }
        let probe = try RedisProbe(port: redis.port)
        // Each node's shard 0 receives its inbox.
        #expect(waitUntil { (try? probe.subscriberCount("switchboard:node:1")) == 1 && (try? probe.subscriberCount("switchboard:node:2")) == 1 })
        func direct(_ node: NodeProcess) throws -> (TestClient, UInt64) {
            let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
            #expect(try ws.upgrade(path: "/direct").status == 101)
            try ws.sendText("whoami")
            let answer = try ws.readFrame().text
            let raw = try #require(UInt64(answer.dropFirst("id:".count)), "\(answer)")
            return (ws, raw)
        }
        // Two sockets on node 2 (one per shard), one on node 1.
        let (sender, senderID) = try direct(nodes[0])
        let targets = try [direct(nodes[1]), direct(nodes[1])]
        #expect(senderID >> 56 == 1, "socket ids carry the node")
        #expect(targets.allSatisfy { $0.1 >> 56 == 2 })
        #expect(Set(targets.map { ($0.1 >> 48) & 0xFF }) == [0, 1], "one target on each shard of node 2")
        for (ws, id) in targets {
            for i in 0..<50 { try sender.sendText("to:\(id):m\(i)") }
            // In order: one sender shard, one Redis connection, one inbox.
            for i in 0..<50 { #expect(try ws.readFrame().text == "m\(i)") }
        }
        #expect(try nodes[1].metric("switchboard_cluster_addressed_received_total") == 100)
        // A socket of a node that does not exist: counted as undelivered on the sender's node.
        try sender.sendText("to:\(UInt64(9) << 56):lost")
        #expect(waitUntil { (try? nodes[0].metric("switchboard_cluster_addressed_undelivered_total")) == 1 })
        // Close across nodes: the target gets a close frame with the code and reason.
        try sender.sendText("close:\(targets[0].1)")
        let close = try targets[0].0.readFrame()
        #expect(close.opcode == 8 && close.closeCode == 1000 && close.payload.dropFirst(2).elementsEqual("addressed".utf8))
        // And back: node 2 to node 1.
        try targets[1].0.sendText("to:\(senderID):back")
        #expect(try sender.readFrame().text == "back")
    }

    @Test("a publish on any node reaches every node in one order with the same offsets; Redis restarted: fail fast, reconnect, resubscribe")
    func threeNodes() throws {
        var redis = try RedisServer()
        defer { redis.stop() }
        let redisPort = redis.port
        // Node A runs two shards, each with its own Redis connection: its two sockets land one
        // on each (fewest connections first), so A subscribes twice, B and C once. B runs on
        // epoll, A and C on io_uring: the backends mix in one cluster.
        let shards = [2, 1, 1]
        let backends = ["uring", "epoll", "uring"]
        let nodes = try (0..<3).map { try startNode($0 + 1, redisPort: redisPort, shards: shards[$0], backend: backends[$0]) }
        defer { for n in nodes { n.stop() } }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        let clients = try [a, a, b, b, c, c].map { try subscriber($0) }
        let probe = try RedisProbe(port: redisPort)
        // Interest: each shard with local subscribers subscribed once in Redis.
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == 4 }, "four shards subscribed")

        // Two publishers on two nodes, interleaved: 200 messages.
        for i in 0..<100 {
            try clients[0].sendText("A-\(i)")
            try clients[2].sendText("B-\(i)")
        }
        var sequences: [[String]] = []
        for ws in clients { sequences.append(try readTexts(ws, count: 200)) }
        for s in sequences { #expect(s == sequences[0], "one order on every node and every socket") }
        #expect(sequences[0].filter { $0.hasPrefix("A-") } == (0..<100).map { "A-\($0)" }, "a publisher's order kept")
        #expect(sequences[0].filter { $0.hasPrefix("B-") } == (0..<100).map { "B-\($0)" })
        let positions = try nodes.map { try $0.get("/position" + Self.channel) }
        #expect(positions.allSatisfy { $0 == positions[0] } && positions[0].hasSuffix(":200"), "\(positions)")
        let firstEpoch = positions[0].split(separator: ":").first.map(String.init)

        // Redis forgets its scripts (SCRIPT FLUSH): EVALSHA gets NOSCRIPT and the engine falls
        // back to EVAL for the same message; nothing is lost, the offsets go on.
        #expect(try probe.call(["SCRIPT", "FLUSH"]) == .simpleString("OK"))
        for i in 0..<5 { try clients[1].sendText("S-\(i)") }
        for ws in clients { #expect(try readTexts(ws, count: 5) == (0..<5).map { "S-\($0)" }) }
        let flushed = try nodes.map { try $0.get("/position" + Self.channel) }
        #expect(flushed == Array(repeating: "\(firstEpoch ?? ""):205", count: 3), "\(flushed)")
        #expect(try a.metric("switchboard_cluster_publish_errors_total") == 0)

        // Redis dies mid-traffic.
        redis.stop()
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { (try? $0.metric("switchboard_cluster_redis_connected")) == 0 } },
                "every node noticed the outage")
        for i in 0..<10 { try clients[0].sendText("X-\(i)") }
        // Fail fast: refused on the publishing node and counted, with one clear log line.
        #expect(waitUntil { (try? a.metric("switchboard_cluster_publishes_unavailable_total")) == 10 })
        #expect(try a.metric("switchboard_publishes_refused_total") == 10)
        try a.readError { $0.contains("cluster publish refused: not connected to Redis") }

        // Redis is back (empty: it persisted nothing): nodes reconnect and subscribe again.
        redis = try RedisServer(port: redisPort)
        let probe2 = try RedisProbe(port: redisPort)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { (try? probe2.subscriberCount(Self.redisChannel)) == 4 }, "resubscribed")
        for (node, count) in zip(nodes, shards) { #expect(try node.metric("switchboard_cluster_redis_connected") == count) }
        for (node, count) in zip(nodes, shards) { #expect(try node.metric("switchboard_cluster_redis_connects_total") == 2 * count) }
        for i in 0..<20 { try clients[4].sendText("Y-\(i)") }
        for ws in clients {
            // Nothing of the outage arrives: the next messages are the new ones.
            #expect(try readTexts(ws, count: 20) == (0..<20).map { "Y-\($0)" })
        }
        let after = try nodes.map { try $0.get("/position" + Self.channel) }
        #expect(after.allSatisfy { $0 == after[0] } && after[0].hasSuffix(":20"), "\(after)")
        // Redis lost the stream: a new epoch, so nobody mistakes offsets 1...20 for 201...
        #expect(after[0].split(separator: ":").first.map(String.init) != firstEpoch)

        // Interest: when node C's last subscriber leaves, C unsubscribes in Redis; the others
        // still get the channel's messages.
        for ws in clients[4...] { try ws.sendFrame(opcode: 8, payload: [0x03, 0xE8]) }
        #expect(waitUntil { (try? probe2.subscriberCount(Self.redisChannel)) == 3 }, "C unsubscribed")
        try clients[0].sendText("Z")
        for ws in clients[..<4] { #expect(try readTexts(ws, count: 1) == ["Z"]) }
        #expect(try c.get("/position" + Self.channel) == "none", "C keeps nothing about the channel")
        #expect(try b.get("/position" + Self.channel).hasSuffix(":21"))

        // copySubscriptions reaches every node: the room's subscribers on A and B join
        // /broadcast/other, which a new socket on C then publishes to.
        let control = try TestClient(port: c.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try control.upgrade(path: "/direct").status == 101)
        try control.sendText("copy:\(Self.channel):/broadcast/other")
        #expect(waitUntil { (try? probe2.subscriberCount("switchboard:ch:/broadcast/other")) == 3 }, "A's two shards and B")
        let other = try TestClient(port: c.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try other.upgrade(path: "/broadcast/other").status == 101)
        #expect(waitUntil { (try? probe2.subscriberCount("switchboard:ch:/broadcast/other")) == 4 })
        try other.sendText("copied")
        for ws in clients[..<4] + [other] { #expect(try readTexts(ws, count: 1) == ["copied"]) }
    }
}
