@testable import SwitchboardCluster
import Testing

@Suite("Cluster configuration and wire format")
struct ClusterUnitTests {
    @Test func redisURLs() {
        #expect(ClusterConfiguration.parseRedisURL("redis://127.0.0.1:6379")! == ("127.0.0.1", 6379, 0))
        #expect(ClusterConfiguration.parseRedisURL("redis://redis.internal:7000/3")! == ("redis.internal", 7000, 3))
        #expect(ClusterConfiguration.parseRedisURL("redis://[::1]:6380")! == ("::1", 6380, 0))
        for bad in ["127.0.0.1:6379", "redis://127.0.0.1", "redis://:6379", "redis://h:0", "redis://h:70000",
                    "redis://user:pw@h:6379", "redis://h:6379/x", "rediss://h:6379"] {
            #expect(ClusterConfiguration.parseRedisURL(bad) == nil, "\(bad)")
        }
    }

    @Test func validation() {
        var c = ClusterConfiguration()
        #expect(c.validate() == nil)
        c.nodeID = 256
        #expect(c.validate() == "cluster_node_id must be 0...255")
        c = ClusterConfiguration()
        c.keyPrefix = "a{b}"
        #expect(c.validate() == "cluster_key_prefix must be 1...64 bytes without spaces or braces")
        c = ClusterConfiguration()
        c.maxPendingPublishes = 0
        #expect(c.validate() == "cluster_max_pending_publishes must be 1...1048576")
        c = ClusterConfiguration()
        c.redisURL = "redis://localhost:6379"
        guard case .success(let endpoint) = c.resolvedOutboundOptions() else { Issue.record("localhost resolves"); return }
        #expect(endpoint.options.host == "127.0.0.1" || endpoint.options.host == "::1")
    }

    @Test func publishedMessages() {
        let framed = Array("18446744073709551615:42:thello".utf8)
        let decoded = RedisChannelScript.decode(framed)
        #expect(decoded?.position == ClusterPosition(epoch: .max, offset: 42))
        #expect(decoded?.kind == .text)
        #expect(decoded.map { Array(framed[$0.payloadStart...]) } == Array("hello".utf8))
        #expect(RedisChannelScript.decode(Array("1:2:b".utf8))?.kind == .binary, "an empty payload")
        for bad in ["", "1:2:", "1:2:x", "a:2:t", "1:t", "18446744073709551616:1:t", ":1:t"] {
            #expect(RedisChannelScript.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
    }
}
