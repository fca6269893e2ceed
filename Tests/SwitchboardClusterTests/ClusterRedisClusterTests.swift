import Foundation
import SwitchboardCluster
import SwitchboardRESP
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three `switchboard-echo` nodes over a real Redis Cluster of three masters (no replicas),
/// all started here on 127.0.0.1 and stopped at the end (`cluster_redis_mode = cluster`).
@Suite("Cluster over a Redis Cluster: three masters, three nodes", .serialized)
struct ClusterRedisClusterTests {
    /// Three masters (`RedisServer.startCluster`), and with `replicas` each replica in sync
    /// with its master.
    static func startCluster(replicas: Int = 0) throws -> [RedisServer] {
        let servers = try RedisServer.startCluster(replicas: replicas)
        for server in servers where replicas > 0 {
            let probe = try RedisProbe(port: server.port)
            if Self.text(try probe.call(["INFO", "replication"])).contains("role:slave") {
                try #require(waitUntil(timeoutMilliseconds: 20_000) { Self.text(try? probe.call(["INFO", "replication"])).contains("master_link_status:up") },
                             "replica \(server.port) in sync")
            }
        }
        return servers
    }

    static func text(_ value: RESPValue?) -> String {
        switch value {
        case .bulkString(let b)?: return String(decoding: b, as: UTF8.self)
        case .verbatimString(_, let b)?: return String(decoding: b, as: UTF8.self)
        case .simpleString(let s)?: return s
        default: return ""
        }
    }

    func startNode(_ id: Int, seedPort: Int, backend: String) throws -> NodeProcess {
        try startClusterEchoNode(id, redisPort: seedPort, backend: backend, redisCluster: true)
    }

    @Test("channels on three masters: one order and offset per channel on every node; a slot resharded (ASK mid-migration, unasked sunsubscribe, MOVED); a master killed: its channels fail fast, the others go on")
    func threeMasters() throws {
        let servers = try Self.startCluster()
        defer { for s in servers { s.stop() } }
        let probes = try servers.map { try RedisProbe(port: $0.port) }

        // The engine's slot function agrees with Redis's.
        for key in ["switchboard:{c:/broadcast/a}:meta", "{nodes}", "abc", "{}x", "x{}{y}", "{user1000}.following"] {
            guard case .integer(let slot) = try probes[0].call(["CLUSTER", "KEYSLOT", key]) else { throw TestClient.Failure.closed }
            #expect(ClusterSlots.slot(of: Array(key.utf8)) == Int(slot), "\(key)")
        }
        // Who owns what.
        let ranges = try #require(ClusterSlotRange.parse(try probes[0].call(["CLUSTER", "SLOTS"])))
        func ownerPort(_ key: String) -> Int? {
            let slot = ClusterSlots.slot(of: Array(key.utf8))
            return ranges.first { $0.slots.contains(slot) }?.port
        }
        let nodesMaster = try #require(ownerPort("switchboard:{nodes}:members"))
        // One channel on each master.
        var channels: [Int: String] = [:]
        for i in 0..<200 where channels.count < 3 {
            let name = "/broadcast/room\(i)"
            if let port = ownerPort("switchboard:{c:\(name)}:meta"), channels[port] == nil { channels[port] = name }
        }
        try #require(channels.count == 3, "a channel on each master")
        let ports = servers.map(\.port)
        let names = ports.map { channels[$0]! }

        let nodes = try ["uring", "epoll", "uring"].enumerated().map { try startNode($0.offset + 1, seedPort: ports[0], backend: $0.element) }
        defer { for n in nodes { n.stop() } }
        // sockets[node][channel]
        var sockets = try nodes.map { node in
            try names.map { name -> TestClient in
                let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
                #expect(try ws.upgrade(path: name).status == 101)
                return ws
            }
        }
        // Interest: each node SSUBSCRIBEd each channel on its slot's master.
        for (m, name) in names.enumerated() {
            #expect(waitUntil(timeoutMilliseconds: 10_000) {
                (try? probes[m].shardSubscriberCount("switchboard:{c:\(name)}:pub")) == 3
            }, "three nodes subscribed to \(name) on master \(ports[m])")
        }

        // Every node publishes on every channel, interleaved: 3 x 30 messages per channel.
        let perNode = 30
        for i in 0..<perNode {
            for n in 0..<3 {
                for c in 0..<3 { try sockets[n][c].sendText("n\(n)-\(i)") }
            }
        }
        for c in 0..<3 {
            let sequences = try (0..<3).map { n in try readTexts(sockets[n][c], count: 3 * perNode) }
            for s in sequences { #expect(s == sequences[0], "one order for \(names[c]) on every node") }
            for n in 0..<3 { #expect(sequences[0].filter { $0.hasPrefix("n\(n)-") } == (0..<perNode).map { "n\(n)-\($0)" }) }
            let positions = try nodes.map { try $0.get("/position" + names[c]) }
            #expect(positions.allSatisfy { $0 == positions[0] } && positions[0].hasSuffix(":\(3 * perNode)"), "\(names[c]): \(positions)")
        }
        #expect(try nodes.map { try $0.metric("switchboard_cluster_publish_errors_total") } == [0, 0, 0])
        // Membership lives on the `{nodes}` slot's master.
        #expect(waitUntil { (try? nodes[0].metric("switchboard_cluster_members")) == 3 })

        var offsets = [3 * perNode, 3 * perNode, 3 * perNode]
        let victim = try #require((1..<3).first { ports[$0] != nodesMaster })

        // Resharding: the slot of the seed master's channel moves, keys and all, to the master
        // that stays up (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on every master, the
        // source last). The source drops its shard subscribers (an unasked `sunsubscribe`):
        // every node reads the slot map again and subscribes on the new master. Node 3 leaves
        // the channel first, so it hears nothing and keeps the stale map (see below).
        let target = 3 - victim
        func shardSubscribers(_ m: Int) -> Int64? { try? probes[m].shardSubscriberCount("switchboard:{c:\(names[0])}:pub") }
        try sockets[2][0].sendFrame(opcode: 8, payload: [0x03, 0xE8])  // close 1000: the node unsubscribes
        #expect(waitUntil { shardSubscribers(0) == 2 }, "node 3 left \(names[0])")
        let slot = ClusterSlots.slot(of: Array("switchboard:{c:\(names[0])}:meta".utf8))
        let ids = try probes.map { Self.text(try $0.call(["CLUSTER", "MYID"])) }
        let refreshesBefore = try nodes.map { try $0.metric("switchboard_cluster_slot_map_refreshes_total") }
        #expect(Self.text(try probes[target].call(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", ids[0]])) == "OK")
        #expect(Self.text(try probes[0].call(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", ids[target]])) == "OK")
        guard case .array(let keys) = try probes[0].call(["CLUSTER", "GETKEYSINSLOT", String(slot), "100"]) else { throw TestClient.Failure.closed }
        #expect(keys.count == 2, "the channel's meta and history")
        #expect(Self.text(try probes[0].call(["MIGRATE", "127.0.0.1", String(ports[target]), "", "0", "5000", "KEYS"] + keys.map { Self.text($0) })) == "OK")
        // Mid-migration (keys gone from the source, the slot not yet handed over) a publish is
        // answered ASK: it runs on the importing master after ASKING, and gets its offset there;
        // the subscribers are still on the source's shard channel, so it reaches nobody.
        try sockets[0][0].sendText("asked")
        #expect(waitUntil { (try? nodes[0].metric("switchboard_cluster_redirects_total")) == 1 }, "one ASK followed")
        #expect(try nodes[0].metric("switchboard_cluster_publish_errors_total") == 0)
        let metaKey = try #require(keys.map { Self.text($0) }.first { $0.hasSuffix(":meta") })
        #expect(Self.text(try probes[target].call(["ASKING"])) == "OK")
        #expect(try probes[target].call(["HGET", metaKey, "offset"]) == .bulkString(Array(String(3 * perNode + 1).utf8)),
                "the ASKed publish took the next offset on the importing master")
        // Delivered to nobody now; nodes 1 and 2 read it back from the new master's history
        // when they subscribe there (recovery after a moved subscription).
        offsets[0] += 1
        for m in [target, victim, 0] { #expect(Self.text(try probes[m].call(["CLUSTER", "SETSLOT", String(slot), "NODE", ids[target]])) == "OK") }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { shardSubscribers(target) == 2 }, "nodes 1 and 2 subscribed to \(names[0]) on its new master")
        for n in 0..<2 { #expect(try nodes[n].metric("switchboard_cluster_slot_map_refreshes_total") > refreshesBefore[n]) }
        #expect(try nodes[2].metric("switchboard_cluster_slot_map_refreshes_total") == refreshesBefore[2], "node 3 has the stale map")
        // Node 3 joins again with the upgrade and a message in one write: its SSUBSCRIBE and its
        // publish both go to the old master, both are answered MOVED: the map is updated, the
        // subscription made on the new master, the publish sent there (one redirection).
        let rejoined = try TestClient(port: nodes[2].port, receiveTimeoutMilliseconds: 10_000)
        try rejoined.send(Array("GET \(names[0]) HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8)
                          + TestClient.frame(opcode: 1, payload: Array("moved-2".utf8)))
        #expect(try rejoined.readResponse(headOnly: true).status == 101)
        sockets[2][0] = rejoined
        for n in 0..<2 { #expect(try readTexts(sockets[n][0], count: 2) == ["asked", "moved-2"], "the ASKed message recovered first") }
        #expect(try readTexts(sockets[2][0], count: 1) == ["moved-2"], "node 3 subscribed afresh: nothing to recover")
        for n in 0..<2 { #expect(try nodes[n].metric("switchboard_cluster_messages_recovered_total") == 1) }
        #expect(try nodes[2].metric("switchboard_cluster_redirects_total") == 1, "the publish followed MOVED once")
        #expect(shardSubscribers(target) == 3)
        for n in 0..<2 { try sockets[n][0].sendText("moved-\(n)") }
        let moved = try (0..<3).map { n in try readTexts(sockets[n][0], count: 2) }
        #expect(moved.allSatisfy { $0 == moved[0] } && Set(moved[0]) == ["moved-0", "moved-1"], "\(moved)")
        offsets[0] += 3
        let movedPositions = try nodes.map { try $0.get("/position" + names[0]) }
        #expect(movedPositions.allSatisfy { $0 == movedPositions[0] } && movedPositions[0].hasSuffix(":\(offsets[0])"),
                "the offsets go on on the new master: \(movedPositions)")
        #expect(try nodes.map { try $0.metric("switchboard_cluster_publish_errors_total") } == [0, 0, 0])

        // Kill a master (no replicas) that carries neither membership nor the seed.
        #expect(try nodes.map { try $0.metric("switchboard_cluster_redis_connected") } == [3, 3, 3], "one link per master")
        servers[victim].stop()
        #expect(waitUntil(timeoutMilliseconds: 10_000) { nodes.allSatisfy { (try? $0.metric("switchboard_cluster_redis_connected")) == 2 } },
                "every node lost its link to the killed master, and only that one")
        // Publishes to its channel: refused at once, counted, one log line naming the master.
        let unavailableBefore = try nodes[0].metric("switchboard_cluster_publishes_unavailable_total")
        for i in 0..<5 { try sockets[0][victim].sendText("lost-\(i)") }
        #expect(waitUntil { (try? nodes[0].metric("switchboard_cluster_publishes_unavailable_total")) == unavailableBefore + 5 })
        try nodes[0].readError { $0.contains("cluster publish refused: not connected to Redis at 127.0.0.1:\(ports[victim])") }
        // The other masters' channels keep working, in order, offsets going on.
        for c in 0..<3 where c != victim {
            try sockets[1][c].sendText("after")
            for n in 0..<3 { #expect(try readTexts(sockets[n][c], count: 1) == ["after"]) }
            let positions = try nodes.map { try $0.get("/position" + names[c]) }
            #expect(positions.allSatisfy { $0.hasSuffix(":\(offsets[c] + 1)") }, "\(names[c]): \(positions)")
        }
    }
}

extension ClusterRedisClusterTests {
    @Test("a master killed, its replica promoted: the nodes read the new map, subscribe and publish there, offsets go on")
    func failover() throws {
        let servers = try Self.startCluster(replicas: 1)
        defer { for s in servers { s.stop() } }
        let probes = try servers.map { try RedisProbe(port: $0.port) }
        let ranges = try #require(ClusterSlotRange.parse(try probes[0].call(["CLUSTER", "SLOTS"])))
        let seed = try #require(servers.first { server in ranges.contains { $0.port == server.port } }, "a master to name in cluster_redis_url")
        func owner(_ key: String, in ranges: [ClusterSlotRange]) -> Int? {
            let slot = ClusterSlots.slot(of: Array(key.utf8))
            return ranges.first { $0.slots.contains(slot) }?.port
        }
        let nodesMaster = try #require(owner("switchboard:{nodes}:members", in: ranges))
        let victim = try #require(Set(ranges.map(\.port)).first { $0 != nodesMaster && $0 != seed.port })
        let name = try #require((0..<200).map { "/broadcast/room\($0)" }.first { owner("switchboard:{c:\($0)}:meta", in: ranges) == victim })
        let key = "switchboard:{c:\(name)}:meta"

        let nodes = try ["uring", "epoll"].enumerated().map { try startNode($0.offset + 1, seedPort: seed.port, backend: $0.element) }
        defer { for n in nodes { n.stop() } }
        let sockets = try nodes.map { node -> TestClient in
            let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 15_000)
            #expect(try ws.upgrade(path: name).status == 101)
            return ws
        }
        let victimProbe = try #require(servers.firstIndex { $0.port == victim }.map { probes[$0] })
        func shardSubscribers(_ probe: RedisProbe) -> Int64? { try? probe.shardSubscriberCount("switchboard:{c:\(name)}:pub") }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { shardSubscribers(victimProbe) == 2 })
        for i in 0..<10 { try sockets[i % 2].sendText("before-\(i)") }
        for ws in sockets { #expect(try readTexts(ws, count: 10).count == 10) }
        let before = try nodes.map { try $0.get("/position" + name) }
        #expect(before[0] == before[1] && before[0].hasSuffix(":10"), "\(before)")
        // The replica has the channel's offset before the master dies (replication is
        // asynchronous: without this a promoted replica may start from an older offset).
        #expect(try victimProbe.call(["WAIT", "1", "5000"]) == .integer(1))

        servers.first { $0.port == victim }?.stop()
        // Redis promotes the replica (cluster-node-timeout 1 s).
        let seedProbe = try RedisProbe(port: seed.port)
        #expect(waitUntil(timeoutMilliseconds: 20_000) {
            guard let now = try? seedProbe.call(["CLUSTER", "SLOTS"]), let map = ClusterSlotRange.parse(now) else { return false }
            return owner(key, in: map).map { $0 != victim } ?? false
        }, "the replica took the slots")
        let promoted = try #require(ClusterSlotRange.parse(try seedProbe.call(["CLUSTER", "SLOTS"])).flatMap { owner(key, in: $0) })
        let promotedProbe = try RedisProbe(port: promoted)
        // The nodes read the map again (every cluster_heartbeat_ms while a master is down).
        #expect(waitUntil(timeoutMilliseconds: 10_000) { shardSubscribers(promotedProbe) == 2 }, "both nodes subscribed on the promoted replica")
        try sockets[1].sendText("after")
        for ws in sockets { #expect(try readTexts(ws, count: 1) == ["after"]) }
        let after = try nodes.map { try $0.get("/position" + name) }
        let epoch = before[0].split(separator: ":").first.map(String.init) ?? "?"
        #expect(after == ["\(epoch):11", "\(epoch):11"], "same epoch, offsets go on: \(after)")
    }
}

extension ClusterRedisClusterTests {
    @Test("cluster_max_pending_publishes bounds the shard over all its masters: a stalled master's backlog refuses publishes to the others")
    func pendingLimitPerShard() throws {
        let servers = try Self.startCluster()
        defer { for s in servers { s.stop() } }
        let probe = try RedisProbe(port: servers[0].port)
        let ranges = try #require(ClusterSlotRange.parse(try probe.call(["CLUSTER", "SLOTS"])))
        func owner(_ name: String) -> Int? {
            let slot = ClusterSlots.slot(of: Array("switchboard:{c:\(name)}:meta".utf8))
            return ranges.first { $0.slots.contains(slot) }?.port
        }
        let names = (0..<200).map { "/broadcast/room\($0)" }
        let stalledName = try #require(names.first { owner($0) == servers[1].port })
        let otherName = try #require(names.first { owner($0) == servers[2].port })
        let node = try NodeProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1",
            "--set", "cluster_engine=redis", "--set", "cluster_redis_mode=cluster",
            "--set", "cluster_redis_url=redis://127.0.0.1:\(servers[0].port)", "--set", "tick_ms=10",
            "--set", "cluster_max_pending_publishes=3", "--set", "cluster_redis_read_timeout_ms=20000",
        ])
        defer { node.stop() }
        let stalled = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try stalled.upgrade(path: stalledName).status == 101)
        let other = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try other.upgrade(path: otherName).status == 101)
        // Both masters' links are up and subscribed before the first publish: a publish to a
        // master whose link is still connecting is refused at once (by design), so "warm"
        // sent right after the upgrade would be lost on a slow start.
        let stalledProbe = try RedisProbe(port: servers[1].port), otherProbe = try RedisProbe(port: servers[2].port)
        func shardSubscribers(_ probe: RedisProbe, _ name: String) -> Int64? { try? probe.shardSubscriberCount("switchboard:{c:\(name)}:pub") }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { shardSubscribers(stalledProbe, stalledName) == 1 })
        #expect(waitUntil(timeoutMilliseconds: 10_000) { shardSubscribers(otherProbe, otherName) == 1 })
        try stalled.sendText("warm")
        #expect(try readTexts(stalled, count: 1) == ["warm"])
        // The master of `stalledName` holds every script until told otherwise (CLIENT PAUSE
        // WRITE blocks EVAL/EVALSHA): an event, not a sleep that a loaded machine outlasts.
        let sleeper = try TestClient(port: servers[1].port)
        var command: [UInt8] = []
        RESPWriter.writeCommand(["CLIENT", "PAUSE", "30000", "WRITE"], into: &command)
        try sleeper.send(command)
        try sleeper.fill(atLeast: 5)
        #expect(sleeper.buffered == Array("+OK\r\n".utf8))
        for i in 0..<3 { try stalled.sendText("s\(i)") }
        #expect(waitUntil { (try? node.metric("switchboard_cluster_publishes_total")) == 4 }, "three publishes wait on the sleeping master")
        try other.sendText("o")
        #expect(waitUntil { (try? node.metric("switchboard_cluster_publishes_over_limit_total")) == 1 }, "refused: the shard's limit is reached")
        // The master wakes: the three arrive, and the other channel works again.
        var unpause: [UInt8] = []
        RESPWriter.writeCommand(["CLIENT", "UNPAUSE"], into: &unpause)
        try sleeper.send(unpause)
        #expect(try readTexts(stalled, count: 3) == ["s0", "s1", "s2"])
        try other.sendText("o2")
        #expect(try readTexts(other, count: 1) == ["o2"])
    }
}

@Suite("Redis Cluster mode: slots, redirections, slot map, configuration")
struct ClusterRedisClusterUnitTests {
    @Test("CRC16 slots of the Redis Cluster specification's examples and hash tags")
    func slots() {
        #expect(ClusterSlots.slot(of: Array("123456789".utf8)) == 0x31C3 % 16_384, "the specification's CRC16 check value")
        #expect(ClusterSlots.slot(of: Array("{user1000}.following".utf8)) == ClusterSlots.slot(of: Array("user1000".utf8)))
        // An empty tag hashes the whole key: checked against CLUSTER KEYSLOT in `threeMasters`.
        #expect(ClusterSlots.slot(of: Array("foo{{bar}}zap".utf8)) == ClusterSlots.slot(of: Array("{bar".utf8)))
        // A channel whose name holds a brace still keeps its keys and shard channel in one slot.
        let name = "a}b{c"
        let keys = [":meta", ":history", ":pub"].map { ClusterSlots.slot(of: Array("switchboard:{c:\(name)}\($0)".utf8)) }
        #expect(Set(keys).count == 1)
    }

    @Test("MOVED and ASK taken apart; anything else is no redirection")
    func redirections() {
        #expect(ClusterRedirection("MOVED 3999 127.0.0.1:6381").map { [$0.ask ? 1 : 0, $0.slot, $0.port] } == [0, 3999, 6381])
        #expect(ClusterRedirection("MOVED 3999 127.0.0.1:6381")?.host == "127.0.0.1")
        #expect(ClusterRedirection("ASK 3999 ::1:6381").map { ($0.ask, $0.host) } ?? (false, "") == (true, "::1"))
        for bad in ["MOVED", "MOVED 16384 h:1", "MOVED 1 h:0", "MOVED 1 h", "ERR unknown", "NOSCRIPT No matching script", "MOVED -1 h:1", "ASK 1 h:1 x"] {
            #expect(ClusterRedirection(bad) == nil, "\(bad)")
        }
    }

    @Test("CLUSTER SLOTS answers parsed; an error or a malformed range is no map")
    func slotMap() {
        let answer = RESPValue.array([
            .array([.integer(0), .integer(5460), .array([.bulkString(Array("127.0.0.1".utf8)), .integer(7000), .bulkString(Array("id".utf8))])]),
            .array([.integer(5461), .integer(16383), .array([.bulkString(Array("10.0.0.2".utf8)), .integer(7001)]),
                    .array([.bulkString(Array("10.0.0.3".utf8)), .integer(7002)])]),
        ])
        #expect(ClusterSlotRange.parse(answer) == [ClusterSlotRange(slots: 0...5460, host: "127.0.0.1", port: 7000),
                                                   ClusterSlotRange(slots: 5461...16383, host: "10.0.0.2", port: 7001)])
        #expect(ClusterSlotRange.parse(.simpleError("ERR This instance has cluster support disabled")) == nil)
        #expect(ClusterSlotRange.parse(.array([.array([.integer(10), .integer(5), .array([.bulkString([0x61]), .integer(1)])])])) == nil)
        #expect(ClusterSlotRange.parse(.array([.array([.integer(0), .integer(16384), .array([.bulkString([0x61]), .integer(1)])])])) == nil)
    }

    @Test("cluster_redis_mode: standalone by default; cluster needs database 0")
    func configuration() {
        var c = ClusterConfiguration()
        #expect(c.redisMode == .standalone)
        c.redisMode = .cluster
        #expect(c.validate() == nil)
        c.redisURL = "redis://127.0.0.1:7000/1"
        #expect(c.validate() == "cluster_redis_url: a Redis Cluster has database 0 only (cluster_redis_mode = cluster)")
        c.redisMode = .standalone
        #expect(c.validate() == nil)
        #expect(ClusterRedisMode(rawValue: "sentinel") == nil)
    }
}