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

    @Test("incarnation: renew returns the one it replaces, and the new one differs from it")
    func incarnation() {
        let incarnation = ClusterIncarnation(7)
        #expect(incarnation.current == 7)
        let old = incarnation.renew()
        #expect(old == 7 && incarnation.current != 7 && incarnation.current != 0)
        let second = incarnation.current
        #expect(incarnation.renew() == second && incarnation.current != second)
        #expect(ClusterIncarnation().current != 0)
    }

    @Test("membership view: a death is a changed incarnation at once, an absence only after the grace, each reported once")
    func membershipView() {
        var view = ClusterMembershipView(ownNode: 1, graceMilliseconds: 1_000)
        #expect(view.update(live: [2: 20], nowMilliseconds: 0).isEmpty, "no answer counts before a connection")
        view.connected(atMilliseconds: 0)
        #expect(view.update(live: [1: 10, 2: 20, 3: 30], nowMilliseconds: 100).isEmpty)
        #expect(view.known == [2: 20, 3: 30], "the others, not itself")
        // Redis restarted empty: within the grace, absence is not death.
        #expect(view.update(live: [1: 10], nowMilliseconds: 999).isEmpty)
        #expect(view.known == [2: 20, 3: 30])
        // Node 2 restarted (a new incarnation): dead at once, even within the grace.
        #expect(view.update(live: [1: 10, 2: 21], nowMilliseconds: 999) == [ClusterNodeDeath(node: 2, incarnation: 20)], "the old one died")
        #expect(view.known == [2: 21, 3: 30])
        // Past the grace, node 3's absence is its death, reported once.
        #expect(view.update(live: [1: 10, 2: 21], nowMilliseconds: 1_000) == [ClusterNodeDeath(node: 3, incarnation: 30)])
        #expect(view.update(live: [1: 10, 2: 21], nowMilliseconds: 1_100).isEmpty)
        // It comes back (a new process): a member again, no death.
        #expect(view.update(live: [2: 21, 3: 31], nowMilliseconds: 1_200).isEmpty)
        #expect(view.known == [2: 21, 3: 31])
        // A reconnect starts a new grace; between, answers count for nothing.
        view.disconnected()
        #expect(view.update(live: [:], nowMilliseconds: 5_000).isEmpty)
        view.connected(atMilliseconds: 5_000)
        #expect(view.update(live: [:], nowMilliseconds: 5_999).isEmpty)
        #expect(view.update(live: [:], nowMilliseconds: 6_000) == [ClusterNodeDeath(node: 2, incarnation: 21), ClusterNodeDeath(node: 3, incarnation: 31)], "ascending")
    }
}
