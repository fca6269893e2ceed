import Foundation
import Switchboard
import SwitchboardClient
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// RPC on three cluster nodes (in-process brokers, two shards each, as the other in-process
/// cluster tests) over one real redis-server started here. Node ids from `/?id=NAME`.
@Suite("Cluster: RPC across three nodes", .serialized)
struct ClusterRPCTests {
    final class Node {
        let broker: Broker
        let rpc: RPCServer
        init(_ id: Int, redisPort: Int, backend: IOBackendKind, options change: (inout RPCServerOptions) -> Void = { _ in },
             configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
            var o = RPCServerOptions()
            o.requestTimeoutMilliseconds = 20_000
            change(&o)
            rpc = RPCServer(options: o, nodeId: { request in
                request.query.hasPrefix("id=") ? String(request.query.dropFirst(3)) : nil
            }) { node in
                node.client.on("call") { ctx, args in
                    try await ctx.node.server.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
                }
                node.client.on("relay") { ctx, args in
                    try await ctx.node.remoteClient.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
                }
                node.client.on("echo-local") { _, args in .array(args) }
                node.server.on("echo") { ctx, args in ["from": .string(ctx.sender ?? ""), "to": .string(ctx.node.id), "args": .array(args)] }
                node.remoteClient.on("tagged") { ctx, _ in .array((ctx.result.arrayValue ?? []) + [.string("tag:\(ctx.node.id)")]) }
            }
            var configuration = BrokerConfiguration.clusterTestNode(id, redisPort: redisPort, backend: backend)
            configure(&configuration)
            broker = Broker(configuration: configuration, logger: .discarding, handlerFactory: rpc.handlerFactory())
            try broker.start()
        }

        /// A cluster counter, summed over the shards.
        func clusterMetric(_ name: String) -> Int {
            broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) }
        }

        func client(_ id: String) async throws -> RPCClient {
            let c = RPCClient(url: "ws://127.0.0.1:\(broker.port)/?id=\(id)")
            try await c.waitUntilReady()
            return c
        }
    }

    /// What the client receives for the server's `.disconnected`.
    static let nodeDisconnected = RPCClientError.protocolError(subtype: nil, message: "Node disconnected", data: ["reason": "disconnected"])

    /// SCARD of a Redis set (inline command, raw reply).
    func redisCount(_ port: Int, _ key: String) -> Int? {
        guard let c = try? TestClient(port: port), (try? c.send("SCARD \(key)\r\n")) != nil, (try? c.fill()) == true else { return nil }
        let text = String(decoding: c.buffered, as: UTF8.self)
        return text.hasPrefix(":") ? Int(text.dropFirst().prefix { $0.isNumber }) : nil
    }

    /// Processes subscribed to node `node`'s inbox (PUBSUB NUMSUB, inline command, raw reply):
    /// 1 once that node is up on Redis.
    func inboxSubscribers(_ port: Int, node: Int) -> Int? {
        guard let c = try? TestClient(port: port), (try? c.send("PUBSUB NUMSUB switchboard:node:\(node)\r\n")) != nil else { return nil }
        var text = ""
        for _ in 0..<10 where !text.hasSuffix("\r\n") || !text.contains(":") {
            guard (try? c.fill()) == true else { return nil }
            text = String(decoding: c.buffered, as: UTF8.self)
        }
        guard let colon = text.lastIndex(of: ":") else { return nil }
        return Int(text[text.index(after: colon)...].prefix { $0.isNumber })
    }

    @Test("client, server and remote-client requests between nodes on different brokers; a dead node fails its callers",
          arguments: [IOBackendKind.uring, .epoll])
    func threeForms(_ backend: IOBackendKind) async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try (1...3).map { try Node($0, redisPort: redis.port, backend: backend) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        let a = try await nodes[0].client("alpha")
        let b = try await nodes[1].client("beta")
        let c = try await nodes[2].client("gamma")
        for id in ["alpha", "beta", "gamma"] {
            try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:\(id)") == 1 }  // in the cluster directory
        }
        b.on("greet") { args in .string("beta's client got \(try JSONValue.array(args).jsonString())") }
        c.on("tagged") { args in .array(args) }

        // server request: alpha (node 1) -> beta's server handlers (node 2), and gamma -> alpha.
        #expect(try await a.send("call", ["beta", "echo", 7]) == ["from": "alpha", "to": "beta", "args": [7]])
        #expect(try await c.send("call", ["alpha", "echo", "x"]) == ["from": "gamma", "to": "alpha", "args": ["x"]])
        // remote client request: alpha -> beta's node -> beta's client (node 2), passed through.
        #expect(try await a.send("relay", ["beta", "greet", "hi"]) == #"beta's client got ["hi"]"#)
        // remote client handler edits the result on node 3, then gamma's client answers.
        #expect(try await b.send("relay", ["gamma", "tagged", "y"]) == ["y", "tag:gamma"])
        // Errors cross too: unhandled on the target node, unknown id anywhere.
        do {
            _ = try await a.send("call", ["beta", "nothing"])
            Issue.record("no error")
        } catch { #expect(error == .unhandled(name: "nothing")) }
        do {
            _ = try await a.send("call", ["nobody", "echo"])
            Issue.record("no error")
        } catch { #expect(error == Self.nodeDisconnected) }
        // 50 concurrent requests node 1 -> node 3: every answer reaches its own caller.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<50 {
                group.addTask {
                    let answer = try await a.send("call", ["gamma", "echo", .number(Double(i))])
                    #expect(answer == ["from": "alpha", "to": "gamma", "args": [.number(Double(i))]])
                }
            }
            try await group.waitForAll()
        }

        // A caller waiting on a node that is declared dead fails at once (not at its timeout):
        // gamma's client never answers "hang", so the request waits on node 3.
        c.on("hang") { _ in try await Task.sleep(for: .seconds(60)); return nil }
        let started = ContinuousClock.now
        let waiting = Task { () async -> RPCClientError? in
            do throws(RPCClientError) {
                _ = try await a.send("relay", ["gamma", "hang"])
                return nil
            } catch { return error }
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(nodes[0].rpc.nodeDied(3))
        #expect(await waiting.value == Self.nodeDisconnected)
        #expect(ContinuousClock.now - started < .seconds(10), "long before the 20 s timeout")
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:gamma") == 0 }  // node 3's ids left the directory
        await a.close()
        await b.close()
        await c.close()
    }

    @Test("an id registered while Redis is down reaches the directory once Redis is up, and is called from another node; a restarted Redis gets it back on reconnect",
          arguments: [IOBackendKind.uring, .epoll])
    func directoryAcrossOutages(_ backend: IOBackendKind) async throws {
        // A port with no Redis on it yet: the nodes start, their shards keep reconnecting.
        let port = try { let r = try RedisServer(); defer { r.stop() }; return r.port }()
        let nodes = try (1...2).map { id in
            try Node(id, redisPort: port, backend: backend) {
                $0.clusterDirectoryRetryMilliseconds = 50
                $0.clusterDirectoryRefreshMilliseconds = 0  // the reconnect alone restores (RPCDirectorySyncTests: the refresh)
            }
        }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        // init does not wait for Redis: the node works within its process meanwhile.
        let a = try await nodes[0].client("alpha")
        #expect(try await a.send("echo-local", ["x"]) == ["x"])
        #expect(nodes[0].rpc.metrics.directoryWriteFailures.value >= 1)

        var redis = try RedisServer(port: port)
        let b = try await nodes[1].client("beta")
        // Within the shards' reconnect backoff plus one retry interval; and every shard of both
        // nodes is connected (a call goes through its caller's shard's connection, to the
        // target node's inbox).
        func connected(_ node: Node) -> Bool {
            node.broker.metricSamples().filter { $0.name == "switchboard_cluster_redis_connected" }.reduce(0) { $0 + Int($1.value) } == 2
        }
        try await waitUntil(seconds: 10) {
            redisCount(port, "switchboard:{rpc}:id:alpha") == 1 && redisCount(port, "switchboard:{rpc}:id:beta") == 1
                && nodes.allSatisfy(connected) && inboxSubscribers(port, node: 1) == 1 && inboxSubscribers(port, node: 2) == 1
        }
        #expect(try await b.send("call", ["alpha", "echo", 1]) == ["from": "beta", "to": "alpha", "args": [1]])
        #expect(try await a.send("call", ["beta", "echo", 2]) == ["from": "alpha", "to": "beta", "args": [2]])
        // The directory names a node that is not up (nobody holds its inbox): the call fails
        // at once with disconnected, not at its 20 s timeout.
        let ghost = try TestClient(port: port)
        try ghost.send("SADD switchboard:{rpc}:id:ghost 9\r\n")
        #expect(try ghost.fill())
        let started = ContinuousClock.now
        do {
            _ = try await a.send("call", ["ghost", "echo"])
            Issue.record("no error")
        } catch { #expect(error == Self.nodeDisconnected) }
        #expect(ContinuousClock.now - started < .seconds(5), "long before the 20 s timeout")

        // Redis restarts empty: each shard writes its ids again once its connection is back.
        redis.stop()
        redis = try RedisServer(port: port)
        defer { redis.stop() }
        #expect(redisCount(port, "switchboard:{rpc}:id:alpha") == 0)
        try await waitUntil(seconds: 10) {
            redisCount(port, "switchboard:{rpc}:id:alpha") == 1 && redisCount(port, "switchboard:{rpc}:id:beta") == 1
                && nodes.allSatisfy(connected) && inboxSubscribers(port, node: 1) == 1
        }
        #expect(try await b.send("call", ["alpha", "echo", 3]) == ["from": "beta", "to": "alpha", "args": [3]])
        await a.close()
        await b.close()
    }

    /// One Redis command, inline (its words have no spaces): a bulk string's value, or else
    /// the reply's first line (`:1`, `+OK`, `$-1`).
    func redisLine(_ port: Int, _ command: String) -> String? {
        guard let c = try? TestClient(port: port), (try? c.send(command + "\r\n")) != nil else { return nil }
        let crlf: [UInt8] = [13, 10]
        func line(from start: Int) -> Range<Int>? {
            let bytes = c.buffered
            guard start < bytes.count, let end = (start..<(bytes.count - 1)).first(where: { Array(bytes[$0...$0 + 1]) == crlf }) else { return nil }
            return start..<end
        }
        for _ in 0..<10 where line(from: 0) == nil {
            guard (try? c.fill()) == true else { return nil }
        }
        guard let first = line(from: 0) else { return nil }
        let head = String(decoding: c.buffered[first], as: UTF8.self)
        guard head.hasPrefix("$"), let length = Int(head.dropFirst()), length >= 0 else { return head }
        for _ in 0..<10 where line(from: first.upperBound + 2) == nil {
            guard (try? c.fill()) == true else { return nil }
        }
        guard let value = line(from: first.upperBound + 2), value.count == length else { return nil }
        return String(decoding: c.buffered[value], as: UTF8.self)
    }

    @Test("a directory clean-up step refused at once for a full backlog (cluster_max_pending_publishes = 1) goes out when the backlog drains, with no reconnect",
          arguments: [IOBackendKind.uring, .epoll])
    func backlogDrained(_ backend: IOBackendKind) async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let nodes = try (1...2).map { try Node($0, redisPort: redis.port, backend: backend, configure: { $0.cluster.maxPendingPublishes = 1 }) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        for node in 1...2 { try await waitUntil { inboxSubscribers(redis.port, node: node) == 1 } }
        // Nodes 8 and 9 (no such processes here): one directory id each, written by incarnation 7.
        for node in [8, 9] {
            #expect(redisLine(redis.port, "SADD switchboard:{rpc}:id:n\(node) \(node)") == ":1")
            #expect(redisLine(redis.port, "HSET switchboard:{rpc}:owned:\(node) n\(node) 7") == ":1")
        }
        let connects = nodes[0].clusterMetric("switchboard_cluster_redis_connects_total")

        // Redis holds every command for 800 ms: node 1's shard 0 sends node 9's first clean-up
        // step, which fills its backlog of one; node 8's is refused at once and kept.
        #expect(redisLine(redis.port, "CLIENT PAUSE 800 ALL") == "+OK")
        nodes[0].broker.deliverNodeDeath(9, incarnation: 7)
        nodes[0].broker.deliverNodeDeath(8, incarnation: 7)
        try await waitUntil { nodes[0].clusterMetric("switchboard_cluster_publishes_over_limit_total") == 1 }

        // The pause ends: node 9's step is answered, the backlog drains, node 8's goes out.
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:n9") == 0 && redisCount(redis.port, "switchboard:{rpc}:id:n8") == 0 }
        #expect(redisLine(redis.port, "EXISTS switchboard:{rpc}:owned:8 switchboard:{rpc}:owned:9") == ":0")
        #expect(nodes.map { $0.rpc.metrics.directoryCleanUpsResumed.value } == [1, 0])
        #expect(nodes[0].clusterMetric("switchboard_cluster_backlogs_drained_total") == 1)
        #expect(nodes[0].clusterMetric("switchboard_cluster_redis_connects_total") == connects, "no reconnect: the drain resumed it")
    }

    @Test("a process removes the ids its node's earlier processes left; a clean-up of a node's old incarnation that runs after the node heard of its own death leaves the ids it wrote back; the new incarnation's death removes them",
          arguments: [IOBackendKind.uring, .epoll])
    func lateCleanUp(_ backend: IOBackendKind) async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // An id an earlier process of node 1 left (nobody was up to see it die): the new
        // process removes it when its shard 0 reaches Redis.
        #expect(redisLine(redis.port, "SADD switchboard:{rpc}:id:earlier 1") == ":1")
        #expect(redisLine(redis.port, "HSET switchboard:{rpc}:owned:1 earlier 777") == ":1")
        let nodes = try (1...2).map { try Node($0, redisPort: redis.port, backend: backend) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        // The count follows Redis's answer, which reaches the shard after the key is gone.
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:earlier") == 0 && nodes.map { $0.rpc.metrics.staleDirectoryIds.value } == [1, 0] }
        let a = try await nodes[0].client("alpha")
        let b = try await nodes[1].client("beta")
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 1 && redisCount(redis.port, "switchboard:{rpc}:id:beta") == 1 }
        let old = nodes[0].broker.clusterIncarnation.current
        #expect(redisLine(redis.port, "HGET switchboard:{rpc}:owned:1 alpha") == String(old), "tagged with its writer's incarnation")
        // An id of the old incarnation that is gone (as one whose withdrawal Redis never got):
        // the clean-ups below remove it, which shows that they ran.
        func plantStale(_ id: String) {
            #expect(redisLine(redis.port, "SADD switchboard:{rpc}:id:\(id) 1") == ":1")
            #expect(redisLine(redis.port, "HSET switchboard:{rpc}:owned:1 \(id) \(old)") == ":1")
        }
        plantStale("stale")

        // The others declared node 1 dead while it lived: its engine renews the incarnation and
        // tells its shards. Shard 0 removes what the old one wrote; alpha's owner shard writes
        // it back under the new one.
        #expect(nodes[0].broker.clusterIncarnation.renew() == old)
        let new = nodes[0].broker.clusterIncarnation.current
        nodes[0].broker.deliverNodeDeath(1, incarnation: old)
        try await waitUntil {
            redisCount(redis.port, "switchboard:{rpc}:id:stale") == 0 && redisLine(redis.port, "HGET switchboard:{rpc}:owned:1 alpha") == String(new)
        }
        #expect(redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 1)

        // Node 2 learns of the old incarnation's death late, after all that.
        plantStale("stale2")
        nodes[1].broker.deliverNodeDeath(1, incarnation: old)
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:stale2") == 0 }
        #expect(redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 1, "alpha stays in the directory")
        #expect(redisLine(redis.port, "HGET switchboard:{rpc}:owned:1 alpha") == String(new))
        #expect(try await b.send("call", ["alpha", "echo", 1]) == ["from": "beta", "to": "alpha", "args": [1]])

        // The new incarnation dies: alpha leaves the directory.
        nodes[1].broker.deliverNodeDeath(1, incarnation: new)
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 0 }
        #expect(redisLine(redis.port, "HLEN switchboard:{rpc}:owned:1") == ":0")
        await a.close()
        await b.close()
    }

    @Test("what a build before the incarnation tags left (`P:{rpc}:node:N` sets) leaves the directory at the node's first connect and at a clean-up of the node; an id the node's hash still holds stays",
          arguments: [IOBackendKind.uring, .epoll])
    func olderBuild(_ backend: IOBackendKind) async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        // An old build of node 1 announced `earlier` (a set per node, no writer recorded) and
        // stopped; the new build starts on the same Redis.
        #expect(redisLine(redis.port, "SADD switchboard:{rpc}:id:earlier 1") == ":1")
        #expect(redisLine(redis.port, "SADD switchboard:{rpc}:node:1 earlier") == ":1")
        let nodes = try (1...2).map { try Node($0, redisPort: redis.port, backend: backend) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        // The count follows Redis's answer, which reaches the shard after the key is gone.
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:earlier") == 0 && nodes.map { $0.rpc.metrics.staleDirectoryIds.value } == [1, 0] }
        #expect(redisLine(redis.port, "EXISTS switchboard:{rpc}:node:1") == ":0")

        // A set of node 1 that also names its live id (as a rolled-back build could leave): a
        // late clean-up of an old incarnation, run by node 2, removes the id the hash does not
        // hold and keeps alpha.
        let a = try await nodes[0].client("alpha")
        let b = try await nodes[1].client("beta")
        try await waitUntil { redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 1 }
        #expect(redisLine(redis.port, "SADD switchboard:{rpc}:id:gone 1") == ":1")
        #expect(redisLine(redis.port, "SADD switchboard:{rpc}:node:1 gone alpha") == ":2")
        nodes[1].broker.deliverNodeDeath(1, incarnation: 12345)
        try await waitUntil { redisLine(redis.port, "EXISTS switchboard:{rpc}:node:1") == ":0" }
        #expect(redisCount(redis.port, "switchboard:{rpc}:id:gone") == 0)
        #expect(redisCount(redis.port, "switchboard:{rpc}:id:alpha") == 1, "alpha stays in the directory")
        #expect(try await b.send("call", ["alpha", "echo", 1]) == ["from": "beta", "to": "alpha", "args": [1]])
        await a.close()
        await b.close()
    }
}
