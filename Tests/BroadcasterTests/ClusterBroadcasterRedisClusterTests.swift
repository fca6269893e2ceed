import Foundation  // JSONSerialization, as in the other broadcaster tests
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The master that owns `key`: the one that answers a command on it instead of `-MOVED`.
func owningMaster(_ key: String, among servers: [RedisServer]) -> Int? {
    servers.firstIndex { redisInline($0.port, "EXISTS \(key)").hasPrefix(":") }
}

/// The broadcaster over a Redis Cluster (`cluster_redis_mode = cluster`): three in-process
/// nodes, channels on three different masters.
@Suite("Cluster over a Redis Cluster: broadcaster across three nodes", .serialized)
struct ClusterBroadcasterRedisClusterTests {
    func metric(_ node: BCServer, _ name: String) -> Int {
        node.broker.metricsText().split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            .compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    @Test("REST publishes on A reach B and C on channels of three masters, in order with one epoch each; recovery on A; A receives nothing it does not need")
    func acrossMasters() throws {
        let servers = try RedisServer.startCluster()
        defer { for s in servers { s.stop() } }
        // One channel on each master (its keys and shard channel share the tag {bc:NAME}).
        var channelOf: [Int: String] = [:]
        for i in 0..<300 where channelOf.count < 3 {
            let name = "room\(i)"
            if let m = owningMaster("switchboard:p:{bc:\(name)}:meta", among: servers), channelOf[m] == nil { channelOf[m] = name }
        }
        try #require(channelOf.count == 3, "a channel on each master")
        let channels = (0..<3).map { channelOf[$0]! }

        let nodes = try zip(1...3, [IOBackendKind.uring, .epoll, .uring]).map { id, backend in
            try BCServer(backend: backend, shards: 1, configure: {
                $0.history = [BroadcasterHistoryRule(pattern: "room*", limits: .init(maxMessages: 20, maxBytes: 1 << 20))]
            }, broker: {
                $0.cluster.engine = .redis
                $0.cluster.redisMode = .cluster
                $0.cluster.redisURL = "redis://127.0.0.1:\(servers[0].port)"
                $0.cluster.nodeID = id
                $0.cluster.initialBackoffMilliseconds = 20
                $0.cluster.maxBackoffMilliseconds = 200
                $0.cluster.heartbeatMilliseconds = 100
                $0.cluster.nodeTTLMilliseconds = 2_000
            })
        }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        // Every node read the slot map, holds a connection to each master, and heartbeats on
        // the `{nodes}` master.
        #expect(waitUntil(timeoutMilliseconds: 15_000) {
            nodes.allSatisfy { metric($0, "switchboard_cluster_members") == 3 && metric($0, "switchboard_cluster_redis_connected") == 3 }
        })

        // One subscriber on B and one on C, each of the three channels; every subscribe is
        // answered once the channel's master has the node's shard subscription.
        let subscribers = try [b, c].map { node -> BCClient in
            let client = try node.authed(channels: channels)
            for channel in channels { try client.expectResult(try client.call("subscribe", #"{"channel":"\#(channel)"}"#)) }
            return client
        }
        for (m, channel) in channels.enumerated() {
            #expect(redisInline(servers[m].port, "PUBSUB SHARDNUMSUB switchboard:p:{bc:\(channel)}:pub").hasSuffix(":2\r\n"),
                    "B and C follow \(channel) on its master, A does not")
        }

        // REST publishes on A, interleaved over the channels: each channel's messages arrive on
        // B and C in order, offsets 1...10, one epoch per channel the same on both nodes.
        for n in 1...10 {
            for channel in channels {
                let r = try a.restPublish(#"{"channel":"\#(channel)","payload":\#(n)}"#)
                #expect(r.status == 200 && r.bodyText.contains(#""offset":\#(n)"#), "\(r.bodyText)")
            }
        }
        var epochs: [String: Set<String>] = [:]
        for client in subscribers {
            var next: [String: Int] = [:]
            for _ in 0..<30 {
                let m = try client.expectBroadcast()
                let channel = m["channel"] as? String ?? "?"
                let expected = next[channel] ?? 1
                #expect(m["offset"] as? Int == expected && m["payload"] as? Int == expected, "\(m)")
                next[channel] = expected + 1
                epochs[channel, default: []].insert(m["epoch"] as? String ?? "")
            }
            #expect(next == Dictionary(uniqueKeysWithValues: channels.map { ($0, 11) }), "\(next)")
        }
        #expect(epochs.count == 3 && epochs.values.allSatisfy { $0.count == 1 && !$0.contains("") }, "\(epochs)")
        #expect(metric(a, "switchboard_cluster_deliveries_total") == 0, "A has no subscriber: none of the traffic reached it")
        #expect(metric(b, "switchboard_cluster_deliveries_total") == 30)
        #expect(nodes.map { metric($0, "switchboard_cluster_publish_errors_total") } == [0, 0, 0])

        // Recovery on A (no subscriber there before) of the third channel from offset 4: 5...10
        // come back from its master; then a publish on B reaches A, B and C.
        let channel = channels[2]
        let epoch = try #require(epochs[channel]?.first)
        let late = try a.authed(channels: [channel])
        let recovered = try late.expectResult(try late.call("subscribe", #"{"channel":"\#(channel)","since":{"offset":4,"epoch":"\#(epoch)"}}"#))
        #expect(recovered["recovered"] as? Bool == true && recovered["offset"] as? Int == 10 && recovered["epoch"] as? String == epoch,
                "\(recovered)")
        for n in 5...10 { #expect(try late.expectBroadcast()["offset"] as? Int == n) }
        #expect(redisInline(servers[2].port, "PUBSUB SHARDNUMSUB switchboard:p:{bc:\(channel)}:pub").hasSuffix(":3\r\n"))
        #expect(try b.restPublish(#"{"channel":"\#(channel)","payload":11}"#).status == 200)
        for client in [late] + subscribers {
            let m = try client.expectBroadcast()
            #expect(m["channel"] as? String == channel && m["offset"] as? Int == 11 && m["epoch"] as? String == epoch, "\(m)")
        }
        // A stale position (another epoch) is told it missed out.
        let stale = try c.authed(channels: [channel])
        let missed = try stale.expectResult(try stale.call("subscribe", #"{"channel":"\#(channel)","since":{"offset":4,"epoch":"1"}}"#))
        #expect(missed["recovered"] as? Bool == false && missed["offset"] as? Int == 11, "\(missed)")

        // The first channel's slot moves, keys and all, from master 0 to master 1 (IMPORTING,
        // MIGRATING, MIGRATE, SETSLOT NODE everywhere). B and C follow master 0's unasked
        // `sunsubscribe`; A, which never followed the channel, keeps a stale map: its recovering
        // subscribe reads on master 0, is answered MOVED, moves its subscription and reads on
        // master 1 (one redirection), and recovers.
        let moved = channels[0]
        let meta = "switchboard:p:{bc:\(moved)}:meta", history = "switchboard:p:{bc:\(moved)}:history"
        let movedEpoch = try #require(epochs[moved]?.first)
        let slotReply = redisInline(servers[0].port, "CLUSTER KEYSLOT \(meta)")
        let slot = try #require(Int(slotReply.dropFirst().prefix { $0.isNumber }), "\(slotReply)")
        let ids = servers.map { String(redisInline($0.port, "CLUSTER MYID").split(separator: "\r\n").last ?? "") }
        #expect(ids.allSatisfy { $0.count == 40 }, "\(ids)")
        #expect(redisInline(servers[1].port, "CLUSTER SETSLOT \(slot) IMPORTING \(ids[0])") == "+OK\r\n")
        #expect(redisInline(servers[0].port, "CLUSTER SETSLOT \(slot) MIGRATING \(ids[1])") == "+OK\r\n")
        #expect(redisInline(servers[0].port, #"MIGRATE 127.0.0.1 \#(servers[1].port) "" 0 5000 KEYS \#(meta) \#(history)"#) == "+OK\r\n")
        for m in [1, 2, 0] { #expect(redisInline(servers[m].port, "CLUSTER SETSLOT \(slot) NODE \(ids[1])") == "+OK\r\n") }
        #expect(waitUntil(timeoutMilliseconds: 10_000) {
            redisInline(servers[1].port, "PUBSUB SHARDNUMSUB switchboard:p:{bc:\(moved)}:pub").hasSuffix(":2\r\n")
        }, "B and C follow the channel on its new master")
        let redirectsBefore = metric(a, "switchboard_cluster_redirects_total")
        let onA = try a.authed(channels: [moved])
        let again = try onA.expectResult(try onA.call("subscribe", #"{"channel":"\#(moved)","since":{"offset":8,"epoch":"\#(movedEpoch)"}}"#))
        #expect(again["recovered"] as? Bool == true && again["offset"] as? Int == 10 && again["epoch"] as? String == movedEpoch, "\(again)")
        for n in 9...10 { #expect(try onA.expectBroadcast()["offset"] as? Int == n) }
        #expect(metric(a, "switchboard_cluster_redirects_total") > redirectsBefore, "A followed MOVED")
        #expect(redisInline(servers[1].port, "PUBSUB SHARDNUMSUB switchboard:p:{bc:\(moved)}:pub").hasSuffix(":3\r\n"))
        let r = try a.restPublish(#"{"channel":"\#(moved)","payload":11}"#)
        #expect(r.status == 200 && r.bodyText.contains(#""offset":11"#), "the offsets go on on the new master: \(r.bodyText)")
        for client in [onA] + subscribers {
            let m = try client.expectBroadcast()
            #expect(m["channel"] as? String == moved && m["offset"] as? Int == 11 && m["epoch"] as? String == movedEpoch, "\(m)")
        }
    }
}
