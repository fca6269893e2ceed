import Foundation  // JSONSerialization, as in the other broadcaster tests
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The broadcaster's cross-node traffic is interest-routed: a node is subscribed in Redis to a
/// channel only while it has a subscriber of it, so a node without one receives none of its
/// messages. Three in-process nodes (one shard each, so Redis's subscriber count is the number
/// of interested nodes) over one real redis-server started here.
@Suite("Cluster: broadcaster interest routing", .serialized)
struct ClusterBroadcasterInterestTests {
    static let pubSub = "switchboard:p:{bc:room}:pub"

    /// One inline command to Redis; the raw reply (enough for the short answers used here).
    func redis(_ port: Int, _ command: String) throws -> String {
        let c = try TestClient(port: port)
        try c.send(command + "\r\n")
        _ = try c.fill()
        return String(decoding: c.buffered, as: UTF8.self)
    }

    /// Redis's subscriber count of the channel (PUBSUB NUMSUB's raw reply ends with it).
    func subscribed(_ port: Int) throws -> Int? {
        let reply = try redis(port, "PUBSUB NUMSUB \(Self.pubSub)")
        guard let colon = reply.lastIndex(of: ":") else { return nil }
        return Int(reply[reply.index(after: colon)...].prefix { $0.isNumber })
    }

    /// A metric summed over the node's shards.
    func metric(_ node: BCServer, _ name: String) -> Int {
        node.broker.metricsText().split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            .compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    func subscribe(_ client: BCClient, since: String = "") throws -> JSON {
        try client.expectResult(try client.call("subscribe", #"{"channel":"room"\#(since)}"#))
    }

    @Test("a node without subscribers receives none of a channel's traffic; the last subscriber leaving unsubscribes; a new one is exact",
          arguments: backends)
    func interest(_ backend: IOBackendKind) throws {
        let redisServer = try RedisServer()
        defer { redisServer.stop() }
        let nodes = try (1...3).map { id in
            try BCServer(backend: backend, shards: 1, configure: {
                $0.history = [BroadcasterHistoryRule(pattern: "room", limits: .init(maxMessages: 10, maxBytes: 1 << 20))]
            }, broker: {
                $0.cluster.engine = .redis
                $0.cluster.redisURL = "redis://127.0.0.1:\(redisServer.port)"
                $0.cluster.nodeID = id
                $0.cluster.initialBackoffMilliseconds = 20
            })
        }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        #expect(waitUntil { (try? redis(redisServer.port, "PUBSUB NUMSUB switchboard:node:all"))?.hasSuffix(":3\r\n") == true },
                "every node is connected to Redis")
        #expect(try subscribed(redisServer.port) == 0, "nobody follows the channel yet")

        // A subscribe in a cluster is answered once Redis has the node's subscription: Redis
        // counts it as soon as the answer is read, no waiting.
        let onA = try a.authed(channels: ["room"])
        _ = try subscribe(onA)
        #expect(try subscribed(redisServer.port) == 1)
        let onB = try b.authed(channels: ["room"])
        _ = try subscribe(onB)
        #expect(try subscribed(redisServer.port) == 2, "A and B, not C")

        // Published on C, which has no subscriber: A and B get every message, C none.
        for n in 1...5 { #expect(try c.restPublish(#"{"channel":"room","payload":\#(n)}"#).status == 200) }
        for client in [onA, onB] {
            for n in 1...5 { #expect(try client.expectBroadcast()["offset"] as? Int == n) }
        }
        #expect(metric(a, "switchboard_cluster_deliveries_total") == 5)
        #expect(metric(b, "switchboard_cluster_deliveries_total") == 5)
        #expect(metric(c, "switchboard_cluster_deliveries_total") == 0, "C received none of the channel's traffic")
        #expect(nodes.map { metric($0, "switchboard_cluster_addressed_received_total") } == [0, 0, 0], "nor anything through a node inbox")
        #expect(metric(c, "switchboard_cluster_subscribed_channels") == 0)
        #expect(metric(c, "switchboard_cluster_publishes_total") == 5)

        // B's last subscriber leaves: B unsubscribes in Redis, and the next messages reach A only.
        try onB.expectResult(try onB.call("unsubscribe", #"{"channel":"room"}"#))
        #expect(waitUntil { (try? subscribed(redisServer.port)) == 1 }, "B left the channel in Redis")
        for n in 6...8 { #expect(try c.restPublish(#"{"channel":"room","payload":\#(n)}"#).status == 200) }
        for n in 6...8 { #expect(try onA.expectBroadcast()["offset"] as? Int == n) }
        #expect(metric(b, "switchboard_cluster_deliveries_total") == 5, "B received nothing after its last subscriber left")
        #expect(metric(a, "switchboard_cluster_deliveries_total") == 8)
        #expect(onB.receivesNothing(milliseconds: 100))

        // A new subscriber on B: subscribed again, and every message after its answer arrives
        // (exact: published on A at once after the answer, no waiting).
        let again = try b.authed(channels: ["room"])
        let answer = try subscribe(again)
        #expect(answer["recovered"] == nil && answer["subscriptionId"] is String, "\(answer)")
        #expect(try subscribed(redisServer.port) == 2)
        let published = try a.restPublish(#"{"channel":"room","payload":9}"#)
        #expect(published.status == 200 && published.bodyText.contains(#""offset":9"#), "\(published.bodyText)")
        let first = try again.expectBroadcast()
        #expect(first["offset"] as? Int == 9 && first["seq"] as? Int == 1, "\(first)")
        #expect(try onA.expectBroadcast()["offset"] as? Int == 9)
        #expect(metric(b, "switchboard_cluster_deliveries_total") == 6)

        // Recovery on C (no subscriber there until now) from B's position: 7...9 come back.
        let epoch = try #require(first["epoch"] as? String)
        let late = try c.authed(channels: ["room"])
        let recovered = try subscribe(late, since: #","since":{"offset":6,"epoch":"\#(epoch)"}"#)
        #expect(recovered["recovered"] as? Bool == true && recovered["offset"] as? Int == 9 && recovered["epoch"] as? String == epoch,
                "\(recovered)")
        for n in 7...9 { #expect(try late.expectBroadcast()["offset"] as? Int == n) }
        #expect(try subscribed(redisServer.port) == 3)

        // A's subscriber closes its socket: A leaves the channel in Redis too.
        try onA.socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])  // close 1000
        _ = try onA.expectClose()
        #expect(waitUntil { (try? subscribed(redisServer.port)) == 2 }, "A left the channel in Redis with its last socket")
        #expect(try b.restPublish(#"{"channel":"room","payload":10}"#).status == 200)
        #expect(try again.expectBroadcast()["offset"] as? Int == 10)
        #expect(try late.expectBroadcast()["offset"] as? Int == 10)
        #expect(metric(a, "switchboard_cluster_deliveries_total") == 9, "A received nothing after its last socket closed")
    }
}
