import Foundation  // JSONSerialization, as in the other broadcaster tests
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The broadcaster on three cluster nodes (in-process brokers, as the other in-process cluster
/// tests) over one real redis-server started here. In this target (not the cluster tests')
/// for its token and client helpers.
@Suite("Cluster: broadcaster across three nodes", .serialized)
struct ClusterBroadcasterTests {
    /// One inline command to Redis; the raw reply (enough for the short answers used here).
    func redis(_ port: Int, _ command: String) throws -> String {
        let c = try TestClient(port: port)
        try c.send(command + "\r\n")
        _ = try c.fill()
        return String(decoding: c.buffered, as: UTF8.self)
    }

    @Test("a REST publish on A reaches B and C with the same offsets; recovery on another node; recovered false when the history or the epoch is gone",
          arguments: backends)
    func acrossNodes(_ backend: IOBackendKind) throws {
        let redisServer = try RedisServer()
        defer { redisServer.stop() }
        let nodes = try (1...3).map { id in
            try BCServer(backend: backend, configure: {
                $0.history = [BroadcasterHistoryRule(pattern: "room", limits: .init(maxMessages: 5, maxBytes: 1 << 20))]
            }, broker: { $0.joinCluster(redisPort: redisServer.port, nodeID: id) })
        }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntil { (try? redis(redisServer.port, "PUBSUB NUMSUB switchboard:node:all"))?.hasSuffix(":3\r\n") == true },
                "every node's shard 0 holds the all-nodes inbox")

        let subscribers = try nodes.map { try $0.authed(channels: ["room"]) }
        for s in subscribers { try s.expectResult(try s.call("subscribe", #"{"channel":"room"}"#)) }

        // REST publishes on node A: every node delivers them in one order, same offsets, same epoch.
        for n in 1...3 {
            let r = try nodes[0].restPublish(#"{"channel":"room","payload":\#(n)}"#)
            #expect(r.status == 200 && r.bodyText.contains(#""offset":\#(n)"#), "\(r.bodyText)")
        }
        var epochs: Set<String> = []
        for s in subscribers {
            for n in 1...3 {
                let b = try s.expectBroadcast()
                #expect(b["offset"] as? Int == n && b["payload"] as? Int == n && b["seq"] as? Int == n, "\(b)")
                epochs.insert(b["epoch"] as? String ?? "")
            }
        }
        #expect(epochs.count == 1 && !epochs.contains(""), "\(epochs)")
        let epoch = epochs.first!

        // A client that saw offset 1 on node B reconnects to node C: offsets 2 and 3 come back,
        // then live ones (published on B) follow without a gap.
        let moved = try nodes[2].authed(channels: ["room"])
        let recovered = try moved.expectResult(try moved.call("subscribe", #"{"channel":"room","since":{"offset":1,"epoch":"\#(epoch)"}}"#))
        #expect(recovered["recovered"] as? Bool == true && recovered["offset"] as? Int == 3 && recovered["epoch"] as? String == epoch, "\(recovered)")
        #expect(try nodes[1].restPublish(#"{"channel":"room","payload":4}"#).status == 200)
        for n in 2...4 { #expect(try moved.expectBroadcast()["offset"] as? Int == n) }
        for s in subscribers { #expect(try s.expectBroadcast()["offset"] as? Int == 4) }

        // The history keeps 5 messages: after 10, offset 2 can no longer be recovered.
        for n in 5...10 { #expect(try nodes[2].restPublish(#"{"channel":"room","payload":\#(n)}"#).status == 200) }
        let late = try nodes[0].authed(channels: ["room"])
        let lateResult = try late.expectResult(try late.call("subscribe", #"{"channel":"room","since":{"offset":2,"epoch":"\#(epoch)"}}"#))
        #expect(lateResult["recovered"] as? Bool == false && lateResult["offset"] as? Int == 10, "\(lateResult)")
        let inTime = try nodes[1].authed(channels: ["room"])
        let inTimeResult = try inTime.expectResult(try inTime.call("subscribe", #"{"channel":"room","since":{"offset":5,"epoch":"\#(epoch)"}}"#))
        #expect(inTimeResult["recovered"] as? Bool == true, "\(inTimeResult)")
        for n in 6...10 { #expect(try inTime.expectBroadcast()["offset"] as? Int == n) }

        // Redis loses the stream: a new epoch, and a client of the old one is told it missed out.
        #expect(try redis(redisServer.port, "DEL switchboard:p:{bc:room}:meta switchboard:p:{bc:room}:history") == ":2\r\n")
        let lost = try nodes[1].authed(channels: ["room"])
        let lostResult = try lost.expectResult(try lost.call("subscribe", #"{"channel":"room","since":{"offset":10,"epoch":"\#(epoch)"}}"#))
        #expect(lostResult["recovered"] as? Bool == false && lostResult["offset"] as? Int == 0, "\(lostResult)")
        let newEpoch = lostResult["epoch"] as? String
        #expect(newEpoch != nil && newEpoch != epoch)
        #expect(try nodes[0].restPublish(#"{"channel":"room","payload":11}"#).status == 200)
        let first = try lost.expectBroadcast()
        #expect(first["offset"] as? Int == 1 && first["epoch"] as? String == newEpoch, "\(first)")
    }
}
