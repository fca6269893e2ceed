import Foundation  // Thread: the readers of the healthy nodes' subscribers
import SwitchboardRESP
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A node that stops reading Redis (SIGSTOP: a hung process, or one whose shard cannot keep
/// up) while a channel it subscribes to carries traffic.
@Suite("Cluster faults: a slow node", .serialized)
struct ClusterSlowNodeTests {
    static let channel = "/broadcast/room"
    static let redisChannel = "switchboard:ch:/broadcast/room"

    func startNode(_ id: Int, redisPort: Int, backend: String) throws -> NodeProcess {
        // A long TTL: this test is about buffers, not death (ClusterNodeDeathTests).
        try startClusterEchoNode(id, redisPort: redisPort, backend: backend, settings: ["cluster_node_ttl_ms=60000"])
    }

    func subscriber(_ node: NodeProcess) throws -> TestClient {
        let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 20_000)
        #expect(try ws.upgrade(path: Self.channel).status == 101)
        return ws
    }

    @Test("Redis drops a node that stops reading at its pub/sub output limit; the others get everything; the node reconnects and its subscribers see the gap")
    func slowSubscriberNode() throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let probe = try RedisProbe(port: redis.port)
        // Redis's own bound for a pub/sub client that does not read (default: 32 MB, or 8 MB for
        // 60 s), small here so the test reaches it in seconds.
        #expect(try probe.call(["CONFIG", "SET", "client-output-buffer-limit", "pubsub 262144 131072 1"]) == .simpleString("OK"))
        let nodes = try [(1, "uring"), (2, "epoll"), (3, "uring")].map { try startNode($0.0, redisPort: redis.port, backend: $0.1) }
        defer {
            kill(nodes[2].process.processIdentifier, SIGCONT)
            for n in nodes { n.stop() }
        }
        let subscribers = try nodes.map { try subscriber($0) }
        let publisher = try subscriber(nodes[0])
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == 3 })

        kill(nodes[2].process.processIdentifier, SIGSTOP)
        // 2,000 messages of 4 KB (8 MB): more than the paused node's socket buffers (2.4 MB
        // still fit in them: Redis's send buffer grows up to net.ipv4.tcp_wmem's 4 MB) and
        // Redis's limit together. The healthy nodes' subscribers read all the while.
        let count = 2_000
        let padding = String(repeating: "x", count: 4_096)
        let received = Mutex<[[Int]]>([[], []])
        let readers = (0..<2).map { index in
            Thread { [ws = subscribers[index]] in
                var seen: [Int] = []
                while seen.count < count, let frame = try? ws.readFrame(), let i = Int(frame.text.prefix { $0 != ":" }) {
                    seen.append(i)
                }
                received.withLock { $0[index] = seen }
            }
        }
        for r in readers { r.start() }
        for i in 0..<count {
            try publisher.sendText("\(i):" + padding)
            #expect(try publisher.readFrame().text.hasPrefix("\(i):"), "the publisher's own copy, in order")
        }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { received.withLock { $0.allSatisfy { $0.count == count } } },
                "the healthy nodes were not slowed down")
        #expect(received.withLock { $0 } == [Array(0..<count), Array(0..<count)], "everything, in order")
        // Redis dropped the paused node's connection at its limit: its buffer stayed bounded.
        let info = try probe.call(["INFO", "stats"])
        let text: String
        switch info {
        case .verbatimString(_, let bytes), .bulkString(let bytes): text = String(decoding: bytes, as: UTF8.self)
        default: Issue.record("INFO stats answered \(info)"); return
        }
        let drops = text.split(separator: "\r\n").first { $0.hasPrefix("client_output_buffer_limit_disconnections:") }
        // (Redis 7.2 counts it in INFO; 7.0, Debian 12's, does not: there PUBSUB NUMSUB shows it.)
        if let drops { #expect(Int(drops.split(separator: ":")[1]) == 1, "\(drops)") }
        #expect(try probe.subscriberCount(Self.redisChannel) == 2, "the paused node is no longer subscribed: Redis dropped it")

        // The node resumes: it finds its connection gone, reconnects, subscribes again.
        kill(nodes[2].process.processIdentifier, SIGCONT)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { (try? probe.subscriberCount(Self.redisChannel)) == 3 }, "resubscribed")
        #expect(try nodes[2].metric("switchboard_cluster_redis_connects_total") == 2)
        #expect(try nodes[2].metric("switchboard_cluster_redis_disconnects_total") == 1)
        try publisher.sendText("after")
        #expect(try publisher.readFrame().text == "after")
        // Its subscriber got a prefix (what had reached the node before Redis cut it off),
        // then the next message: a gap it can see in the offsets.
        var prefix: [Int] = []
        while true {
            let text = try subscribers[2].readFrame().text
            if text == "after" { break }
            prefix.append(try #require(Int(text.prefix { $0 != ":" })))
        }
        print("the paused node delivered \(prefix.count) of \(count) messages, then the gap")
        #expect(prefix == Array(0..<prefix.count) && prefix.count < count, "a prefix, then the gap: \(prefix.count) of \(count)")
        let positions = try nodes.map { try $0.get("/position" + Self.channel) }
        #expect(positions.allSatisfy { $0 == positions[0] } && positions[0].hasSuffix(":\(count + 1)"), "\(positions)")
    }
}
