@testable import SwitchboardCluster  // RedisChannelScript's departure encoding
import Foundation
import SwitchboardRESP
import SwitchboardIO  // monotonicMilliseconds
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif


/// Graceful stop = clean leave (issue 13): a node stopped with SIGTERM removes itself from the
/// membership and announces its departure before its shards drain, so the others run their
/// node-death clean-up at once instead of after `cluster_node_ttl_ms`. The TTL here is 60 s and
/// every wait ends at 20 s: only the clean leave can make these tests pass.
@Suite("Cluster: a node stopped gracefully leaves at once", .serialized)
struct ClusterGracefulLeaveTests {
    static let ttlMilliseconds = 60_000
    static let settings = ["cluster_node_ttl_ms=\(ttlMilliseconds)", "cluster_heartbeat_ms=200", "shutdown_grace_ms=1000"]

    /// SIGTERM, then wait (bounded) for the process to exit; its exit status.
    func terminate(_ node: NodeProcess) -> Int32? {
        kill(node.process.processIdentifier, SIGTERM)
        guard waitUntil(timeoutMilliseconds: 30_000, { !node.process.isRunning }) else { return nil }
        return node.process.terminationStatus
    }

    func members(_ probe: RedisProbe) throws -> [String] {
        guard case .array(let items) = try probe.call(["ZRANGE", "switchboard:members", "0", "-1"]) else { return ["<not an array>"] }
        // Scored by expiry: sorted here by node.
        return items.map { if case .bulkString(let b) = $0 { String(decoding: b, as: UTF8.self) } else { "?" } }.sorted()
    }

    /// Node `node`'s incarnation as the membership holds it in Redis.
    func incarnation(of node: Int, _ probe: RedisProbe) throws -> String {
        guard case .bulkString(let bytes) = try probe.call(["HGET", "switchboard:incarnations", String(node)]) else {
            throw RedisServer.Failure(description: "no incarnation for node \(node)")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The restart-within-TTL tests' fault: node 1 paused (SIGSTOP, so it hears of the restart
    /// only once the test resumes it), node 2 killed (SIGKILL) and started again.
    func restartNode2WhileNode1Paused(_ cluster: ProcessCluster) throws {
        kill(cluster.nodes[0].process.processIdentifier, SIGSTOP)
        kill(cluster.nodes[1].process.processIdentifier, SIGKILL)
        #expect(waitUntil(timeoutMilliseconds: 30_000) { !cluster.nodes[1].process.isRunning })
        try cluster.restart(2)
    }

    @Test("connection broker: node 2 killed and restarted within its TTL; the new process removes the old one's members at start; node 1, hearing of the restart late, removes only the old incarnation's")
    func connectionBrokerRestartWithinTTL() throws {
        let cluster = try ProcessCluster("switchboard", count: 2, settings: Self.settings)
        defer {
            kill(cluster.nodes[0].process.processIdentifier, SIGCONT)
            cluster.stop()
        }
        #expect(cluster.ready())
        let probe = try RedisProbe(port: cluster.redis.port)
        let a = try ClusterProcessProtocolTests.CBClient(cluster.nodes[0])
        let before = try ClusterProcessProtocolTests.CBClient(cluster.nodes[1])
        try a.register("r")
        try before.register("r")
        func role() throws -> [String] {
            guard case .array(let items) = try probe.call(["ZRANGE", "switchboard:{cb}:role:r", "0", "-1"]) else { return ["<not an array>"] }
            return items.map { if case .bulkString(let b) = $0 { String(decoding: b, as: UTF8.self) } else { "?" } }
        }
        #expect(try role() == [a.connectionId, before.connectionId])
        let old = try incarnation(of: 2, probe)
        #expect(try probe.call(["HGET", "switchboard:{cb}:owned:2", before.connectionId + "r"]) == .bulkString(Array(old.utf8)), "tagged with its writer")

        // Node 1 is paused, so it hears of the restart only once it resumes, after the new
        // process registered: the order a late heartbeat gives on a loaded machine.
        try restartNode2WhileNode1Paused(cluster)
        let after = try ClusterProcessProtocolTests.CBClient(cluster.nodes[1])
        try after.register("r")
        // The new process removed what the old one left (nobody else has seen the restart yet).
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? cluster.nodes[1].metric("switchboard_cb_stale_role_members_removed_total")) == 1 })
        #expect(try role() == [a.connectionId, after.connectionId])
        // One more member of the old incarnation (as one whose removal Redis never got): node
        // 1's clean-up removes it, which shows that the clean-up ran.
        let stale = "02000000-0000-4000-8000-000000000001"
        _ = try probe.call(["ZADD", "switchboard:{cb}:role:r", "0", stale])
        _ = try probe.call(["HSET", "switchboard:{cb}:owned:2", stale + "r", old])
        kill(cluster.nodes[0].process.processIdentifier, SIGCONT)

        // Node 1 sees node 2's new incarnation: the old one died. Its clean-up removes the old
        // incarnation's member only; the new process's stays.
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? cluster.nodes[0].metric("switchboard_cluster_node_deaths_total")) == 1 })
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? role()) == [a.connectionId, after.connectionId] }, "\((try? role()) ?? [])")
        #expect(try a.list("r") == #""ids":["\#(a.connectionId)","\#(after.connectionId)"]}"#)
        #expect(try after.list("r") == #""ids":["\#(a.connectionId)","\#(after.connectionId)"]}"#)
    }

    @Test("RPC: node 2 killed and restarted within its TTL; node 1, hearing of the restart late, removes only the old incarnation's directory ids: beta, announced again by the new process, stays in the directory and callable")
    func rpcRestartWithinTTL() throws {
        let cluster = try ProcessCluster("switchboard-cluster-testnode", count: 2, settings: Self.settings)
        defer {
            kill(cluster.nodes[0].process.processIdentifier, SIGCONT)
            cluster.stop()
        }
        #expect(cluster.ready())
        let probe = try RedisProbe(port: cluster.redis.port)
        let alpha = try RawRPCClient(port: cluster.nodes[0].port, id: "alpha")
        let oldBeta = try RawRPCClient(port: cluster.nodes[1].port, id: "beta")
        /// Whether the directory names exactly node `node` for `id`.
        func inDirectory(_ id: String, on node: Int) -> Bool {
            (try? probe.call(["SCARD", "switchboard:{rpc}:id:\(id)"])) == .integer(1)
                && (try? probe.call(["SISMEMBER", "switchboard:{rpc}:id:\(id)", String(node)])) == .integer(1)
        }
        func tag(_ id: String) -> RESPValue? { try? probe.call(["HGET", "switchboard:{rpc}:owned:2", id]) }
        #expect(waitUntil(timeoutMilliseconds: 30_000) { inDirectory("alpha", on: 1) && inDirectory("beta", on: 2) })
        let old = try incarnation(of: 2, probe)
        #expect(tag("beta") == .bulkString(Array(old.utf8)), "tagged with its writer")

        // Node 1 paused, so it hears of node 2's restart only after the new process announced
        // beta again.
        try restartNode2WhileNode1Paused(cluster)
        let beta = try RawRPCClient(port: cluster.nodes[1].port, id: "beta")
        #expect(waitUntil(timeoutMilliseconds: 30_000) { tag("beta").map { $0 != .bulkString(Array(old.utf8)) && $0 != .null } ?? false },
                "the new process announced beta under its own incarnation")
        // An id of the old incarnation (as one whose withdrawal Redis never got): node 1's
        // clean-up removes it, which shows that the clean-up ran.
        _ = try probe.call(["SADD", "switchboard:{rpc}:id:stale", "2"])
        _ = try probe.call(["HSET", "switchboard:{rpc}:owned:2", "stale", old])
        kill(cluster.nodes[0].process.processIdentifier, SIGCONT)

        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? cluster.nodes[0].metric("switchboard_cluster_node_deaths_total")) == 1 })
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.call(["EXISTS", "switchboard:{rpc}:id:stale"])) == .integer(0) },
                "node 1's clean-up ran")
        #expect(inDirectory("beta", on: 2), "beta stays in the directory")
        let call = try alpha.request("call", #"["beta","echo",1]"#)
        #expect(try alpha.read().text == #"{"type":"response","correlationId":"\#(call)","result":{"from":"alpha","to":"beta","args":[1]}}"#)
        _ = (beta, oldBeta)
    }

    @Test("connection broker: SIGTERM on node 2 closes its peers' channels, drops its role members and its membership, long before the TTL; it can rejoin")
    func connectionBrokerPeers() throws {
        let cluster = try ProcessCluster("switchboard", settings: Self.settings)
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let probe = try RedisProbe(port: cluster.redis.port)
        #expect(try members(probe) == ["1", "2", "3"])

        let a = try ClusterProcessProtocolTests.CBClient(nodes[0])
        let b = try ClusterProcessProtocolTests.CBClient(nodes[1])
        let c = try ClusterProcessProtocolTests.CBClient(nodes[2])
        for client in [a, b, c] { try client.register("r") }
        func open(_ from: ClusterProcessProtocolTests.CBClient, _ to: ClusterProcessProtocolTests.CBClient) throws -> String {
            let id = try from.request("open", #""targetId":"\#(to.connectionId)""#)
            let prefix = #"{"type":"channel_opened","replyTo":\#(id),"channelId":""#
            let reply = try from.next()
            #expect(reply.hasPrefix(prefix), "\(reply)")
            let channel = String(reply.dropFirst(prefix.count).prefix(36))
            try to.expect(#"{"type":"incoming_channel","from":"\#(from.connectionId)","channelId":"\#(channel)"}"#)
            return channel
        }
        let ab = try open(a, b)
        let cb = try open(c, b)
        let all = #""ids":["\#(a.connectionId)","\#(b.connectionId)","\#(c.connectionId)"]}"#
        #expect(try c.list("r") == all)

        let stoppedAt = monotonicMilliseconds()
        #expect(terminate(nodes[1]) == 0, "node 2 exits cleanly")
        // Its peers on nodes 1 and 3 hear that their channels closed (20 s wait, 60 s TTL).
        a.socket.setReceiveTimeout(milliseconds: 20_000)
        c.socket.setReceiveTimeout(milliseconds: 20_000)
        try a.expect(#"{"type":"channel_closed_notification","channelId":"\#(ab)"}"#)
        try c.expect(#"{"type":"channel_closed_notification","channelId":"\#(cb)"}"#)
        let elapsed = monotonicMilliseconds() - stoppedAt
        print("node 2's peers notified \(elapsed) ms after SIGTERM (TTL \(Self.ttlMilliseconds) ms)")
        #expect(elapsed < Int64(Self.ttlMilliseconds / 3), "\(elapsed) ms: by the leave, not the expiry")
        // Its role members are gone from Redis, its membership too, and every survivor counted
        // one death.
        #expect(waitUntil(timeoutMilliseconds: 20_000) { (try? probe.call(["ZCARD", "switchboard:{cb}:role:r"])) == .integer(2) })
        #expect(try a.list("r") == #""ids":["\#(a.connectionId)","\#(c.connectionId)"]}"#)
        #expect(try members(probe) == ["1", "3"])
        for node in [nodes[0], nodes[2]] {
            #expect(waitUntil(timeoutMilliseconds: 20_000) { (try? node.metric("switchboard_cluster_members")) == 2 })
            #expect(try node.metric("switchboard_cluster_node_deaths_total") == 1)
            #expect(try node.metric("switchboard_cb_channels_closed_by_node_death_total") == 1)
            try node.readError { $0.contains("cluster: node 2 left (graceful stop)") }
        }
        let stoppedLog = try nodes[1].readError { $0.contains("cluster: node 2 leaves the membership (graceful stop)") }
        #expect(stoppedLog.contains("cluster: node 2 leaves the membership (graceful stop)"))

        // Node 2 comes back (a new process): a member again, no second death anywhere.
        try cluster.restart(2)
        #expect(cluster.ready(), "three members again")
        for node in [nodes[0], nodes[2]] { #expect(try node.metric("switchboard_cluster_node_deaths_total") == 1) }
        let again = try ClusterProcessProtocolTests.CBClient(cluster.nodes[1])
        try again.register("r")
        #expect(try again.list("r") == #""ids":["\#(a.connectionId)","\#(c.connectionId)","\#(again.connectionId)"]}"#)
    }

    @Test("broadcaster: a subscriber of node 2 gets 1001 on SIGTERM, reconnects to node 3 and recovers what was published meanwhile")
    func broadcasterReconnect() throws {
        let cluster = try ProcessCluster("switchboard", settings: Self.settings + [
            "broadcaster_enabled=true", "broadcaster_jwt_secret=\(ClusterProcessProtocolTests.secret)", "broadcaster_api_keys=test-key",
            "broadcaster_history=room|10|1048576|600000",
        ])
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let protocols = ClusterProcessProtocolTests()
        let subscriber = try ClusterProcessProtocolTests.BroadcastClient(nodes[1], channels: ["room"])
        let id = try subscriber.call("subscribe", #"{"channel":"room"}"#)
        _ = try subscriber.result(id)
        let probe = try RedisProbe(port: cluster.redis.port)
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.subscriberCount("switchboard:node:all")) == 3 })
        var epoch = ""
        for n in 1...2 {
            let (status, object) = try protocols.restPublish(nodes[0], #"{"channel":"room","event":"e","payload":\#(n)}"#)
            #expect(status == 200)
            epoch = object["epoch"] as? String ?? ""
        }
        for n in 1...2 { #expect(try subscriber.broadcast()["offset"] as? Int == n) }

        kill(nodes[1].process.processIdentifier, SIGTERM)
        let close = try subscriber.socket.readFrame()
        #expect(close.opcode == 8 && close.closeCode == 1001 && close.payload.dropFirst(2).elementsEqual("server shutting down".utf8), "\(close) \(close.text)")
        #expect(waitUntil(timeoutMilliseconds: 30_000) { !nodes[1].process.isRunning }, "node 2 stopped")
        #expect(nodes[1].process.terminationStatus == 0)
        // Published while the client is away, on the node that stays up.
        #expect(try protocols.restPublish(nodes[2], #"{"channel":"room","event":"e","payload":3}"#).status == 200)
        let back = try ClusterProcessProtocolTests.BroadcastClient(nodes[2], channels: ["room"])
        let again = try back.call("subscribe", #"{"channel":"room","since":{"offset":2,"epoch":"\#(epoch)"}}"#)
        let recovered = try back.result(again)
        #expect(recovered["recovered"] as? Bool == true && recovered["offset"] as? Int == 3 && recovered["epoch"] as? String == epoch, "\(recovered)")
        let missed = try back.broadcast()
        #expect(missed["offset"] as? Int == 3 && missed["payload"] as? Int == 3, "\(missed)")
        // Both survivors saw node 2 leave.
        for node in [nodes[0], nodes[2]] {
            #expect(waitUntil(timeoutMilliseconds: 20_000) { (try? node.metric("switchboard_cluster_members")) == 2 })
        }
    }

    @Test("RPC and handlers: SIGTERM on node 2 fails the requests waiting on it and reaches handleClusterNodeDied on every shard of the others, long before the TTL")
    func rpcCallersAndHandlers() throws {
        let cluster = try ProcessCluster("switchboard-cluster-testnode", settings: Self.settings)
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let probe = try RedisProbe(port: cluster.redis.port)
        // Watchers: one /api socket on each shard of node 1, one on node 3.
        let watchers = try [nodes[0], nodes[0], nodes[2]].map { try ClusterProcessProtocolTests.APIClient($0) }
        #expect(Set(watchers[..<2].map { ($0.id >> 48) & 0xFF }) == [0, 1], "one watcher per shard of node 1")
        let alpha = try RawRPCClient(port: nodes[0].port, id: "alpha")
        let beta = try RawRPCClient(port: nodes[1].port, id: "beta")
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.call(["SCARD", "switchboard:{rpc}:id:beta"])) == .integer(1) })

        // alpha's request waits on beta's client, which never answers (the node's timeout is 30 s).
        let waiting = try alpha.request("relay", #"["beta","tagged","x"]"#)
        let toBeta = try beta.read()
        #expect(toBeta.object["name"] as? String == "tagged", "\(toBeta.text)")

        let stoppedAt = monotonicMilliseconds()
        #expect(terminate(nodes[1]) == 0, "node 2 exits cleanly")
        for watcher in watchers {
            watcher.socket.setReceiveTimeout(milliseconds: 20_000)
            #expect(try watcher.next() == "died:2")
        }
        alpha.socket.setReceiveTimeout(milliseconds: 20_000)
        #expect(try alpha.read().text == "{" + ClusterProcessProtocolTests.disconnected + #","correlationId":"\#(waiting)"}"#)
        let elapsed = monotonicMilliseconds() - stoppedAt
        print("node 2's death heard \(elapsed) ms after SIGTERM (TTL \(Self.ttlMilliseconds) ms)")
        #expect(elapsed < Int64(Self.ttlMilliseconds / 3), "\(elapsed) ms: by the leave, not the expiry")
        // beta's id left the cluster directory; node 2 left the membership.
        #expect(waitUntil(timeoutMilliseconds: 20_000) { (try? probe.call(["SCARD", "switchboard:{rpc}:id:beta"])) == .integer(0) })
        #expect(try members(probe) == ["1", "3"])
        for node in [nodes[0], nodes[2]] { #expect(try node.metric("switchboard_cluster_node_deaths_total") == 1) }
        // One death each: the watchers hear nothing more.
        for watcher in watchers {
            try watcher.send("whoami")
            #expect(try watcher.next() == "id:\(watcher.id)")
        }
    }

    @Test("Redis Cluster mode: SIGTERM on node 2 reaches node 1's handlers at once (the leave script and its SPUBLISH on the {nodes} master)")
    func redisClusterMode() throws {
        let servers = try ClusterRedisClusterTests.startCluster()
        defer { for server in servers { server.stop() } }
        let nodes = try [(1, "uring"), (2, "epoll")].map { id, backend in
            try NodeProcess("switchboard-echo", [
                "--host", "127.0.0.1", "--port", "0", "--shards", "2", "--io-backend", backend,
                "--set", "cluster_engine=redis", "--set", "cluster_redis_mode=cluster",
                "--set", "cluster_redis_url=redis://127.0.0.1:\(servers[0].port)",
                "--set", "cluster_node_id=\(id)", "--set", "tick_ms=10",
                "--set", "cluster_redis_backoff_ms=20", "--set", "cluster_redis_max_backoff_ms=200",
            ] + Self.settings.flatMap { ["--set", $0] })
        }
        defer { for node in nodes { node.stop() } }
        #expect(waitUntil(timeoutMilliseconds: 30_000) { nodes.allSatisfy { (try? $0.metric("switchboard_cluster_members")) == 2 } })
        let watchers = try (0..<2).map { _ in
            let ws = try TestClient(port: nodes[0].port, receiveTimeoutMilliseconds: 20_000)
            #expect(try ws.upgrade(path: "/direct").status == 101)
            return ws
        }
        for ws in watchers {
            try ws.sendText("whoami")
            #expect(try ws.readFrame().text.hasPrefix("id:"))
        }
        let stoppedAt = monotonicMilliseconds()
        #expect(terminate(nodes[1]) == 0, "node 2 exits cleanly")
        for ws in watchers { #expect(try ws.readFrame().text == "died:2", "on each shard of node 1") }
        let elapsed = monotonicMilliseconds() - stoppedAt
        print("Redis Cluster mode: node 2's death heard \(elapsed) ms after SIGTERM (TTL \(Self.ttlMilliseconds) ms)")
        #expect(elapsed < Int64(Self.ttlMilliseconds / 3), "\(elapsed) ms: by the leave, not the expiry")
        #expect(waitUntil(timeoutMilliseconds: 20_000) { (try? nodes[0].metric("switchboard_cluster_members")) == 1 })
        #expect(try nodes[0].metric("switchboard_cluster_node_deaths_total") == 1)
        try nodes[0].readError { $0.contains("cluster: node 2 left (graceful stop)") }
    }

    @Test("a departure is reported once, only for the incarnation that left")
    func departureRules() {
        var view = ClusterMembershipView(ownNode: 1, graceMilliseconds: 0)
        view.connected(atMilliseconds: 0)
        // (Each mutating call on its own line: #expect cannot take one.)
        let first = view.update(live: [1: 10, 2: 20, 3: 30], nowMilliseconds: 1)
        #expect(first == [])
        let otherIncarnation = view.left(2, incarnation: 21)
        #expect(!otherIncarnation, "another incarnation's departure")
        let own = view.left(1, incarnation: 10)
        #expect(!own, "never this node's own")
        let leaving = view.left(2, incarnation: 20)
        #expect(leaving)
        let twice = view.left(2, incarnation: 20)
        #expect(!twice, "once")
        let absent = view.update(live: [1: 10, 3: 30], nowMilliseconds: 2)
        #expect(absent == [], "its absence is no second death")
        let back = view.update(live: [1: 10, 2: 22, 3: 30], nowMilliseconds: 3)
        #expect(back == [], "back as a new member, no death")
        let leavingAgain = view.left(2, incarnation: 22)
        #expect(leavingAgain)

        let encoded = RedisChannelScript.encodeLeave(node: 7, incarnation: UInt64.max)
        #expect(encoded == Array("L7:\(UInt64.max)".utf8))
        #expect(encoded.withUnsafeBytes { RedisChannelScript.decodeLeave($0) }.map { [$0.node, Int($0.incarnation % 1_000)] } == [7, Int(UInt64.max % 1_000)])
        for bad in ["L", "L7", "L7:", "L:1", "L256:1", "L7:x", "L7:1:2", "x7:1", "t7:1"] {
            #expect(Array(bad.utf8).withUnsafeBytes { RedisChannelScript.decodeLeave($0) } == nil, "\(bad)")
        }
    }
}
