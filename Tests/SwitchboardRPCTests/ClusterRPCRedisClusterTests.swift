import Switchboard
import SwitchboardClient
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// RPC over a Redis Cluster (`cluster_redis_mode = cluster`): three in-process nodes on three
/// masters started here (the directory lives on the `{rpc}` slot's master, the node inboxes on
/// the `{nodes}` slot's), started by `RedisServer.startCluster` (SwitchboardTestSupport).
@Suite("Cluster over a Redis Cluster: RPC across three nodes", .serialized)
struct ClusterRPCRedisClusterTests {
    final class Node {
        let broker: Broker
        let rpc: RPCServer
        init(_ id: Int, seedPort: Int, backend: IOBackendKind) throws {
            var c = BrokerConfiguration()
            c.host = "127.0.0.1"
            c.port = 0
            c.io.shardCount = 2
            c.io.backend = backend
            c.io.tickMilliseconds = 10
            c.webSocket.perMessageDeflate = false
            c.cluster.engine = .redis
            c.cluster.redisMode = .cluster
            c.cluster.redisURL = "redis://127.0.0.1:\(seedPort)"
            c.cluster.nodeID = id
            c.cluster.initialBackoffMilliseconds = 20
            c.cluster.maxBackoffMilliseconds = 200
            c.cluster.heartbeatMilliseconds = 100
            c.cluster.nodeTTLMilliseconds = 2_000
            var o = RPCServerOptions()
            o.requestTimeoutMilliseconds = 20_000
            rpc = RPCServer(options: o, nodeId: { request in
                request.query.hasPrefix("id=") ? String(request.query.dropFirst(3)) : nil
            }) { node in
                node.client.on("call") { ctx, args in
                    try await ctx.node.server.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
                }
                node.client.on("relay") { ctx, args in
                    try await ctx.node.remoteClient.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
                }
                node.server.on("echo") { ctx, args in ["from": .string(ctx.sender ?? ""), "to": .string(ctx.node.id), "args": .array(args)] }
            }
            broker = Broker(configuration: c, logger: .discarding, handlerFactory: rpc.handlerFactory())
            try broker.start()
        }

        func client(_ id: String) async throws -> RPCClient {
            let c = RPCClient(url: "ws://127.0.0.1:\(broker.port)/?id=\(id)")
            try await c.waitUntilReady()
            return c
        }

        func metric(_ name: String) -> Int { broker.metricSamples().filter { $0.name == name }.reduce(0) { $0 + Int($1.value) } }
        /// Every node heartbeats, and each of the two shards holds a connection to each master.
        var ready: Bool { metric("switchboard_cluster_members") >= 3 && metric("switchboard_cluster_redis_connected") == 6 }
    }

    @Test("server and remote-client requests between nodes over three masters")
    func requests() async throws {
        let servers = try RedisServer.startCluster()
        defer { for s in servers { s.stop() } }
        let nodes = try zip(1...3, [IOBackendKind.uring, .epoll, .uring]).map { try Node($0, seedPort: servers[0].port, backend: $1) }
        defer { for n in nodes { n.broker.shutdown(graceMilliseconds: 200) } }
        #expect(waitUntil(timeoutMilliseconds: 15_000) { nodes.allSatisfy(\.ready) }, "every node's inbox, heartbeat and masters in place")
        let a = try await nodes[0].client("alpha")
        let b = try await nodes[1].client("beta")
        let c = try await nodes[2].client("gamma")
        // In the directory on the `{rpc}` master (the others answer MOVED).
        for id in ["alpha", "beta", "gamma"] {
            try await waitUntil { servers.contains { redisInline($0.port, "SCARD switchboard:{rpc}:id:\(id)") == ":1\r\n" } }
        }
        b.on("greet") { args in .string("beta's client got \(try JSONValue.array(args).jsonString())") }

        // server form: alpha (node 1) -> beta's server handlers (node 2); gamma -> alpha.
        #expect(try await a.send("call", ["beta", "echo", 7]) == ["from": "alpha", "to": "beta", "args": [7]])
        #expect(try await c.send("call", ["alpha", "echo", "x"]) == ["from": "gamma", "to": "alpha", "args": ["x"]])
        // remote-client form: alpha -> beta's node -> beta's client.
        #expect(try await a.send("relay", ["beta", "greet", "hi"]) == #"beta's client got ["hi"]"#)
        // 20 concurrent requests node 1 -> node 3: every answer reaches its own caller.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let answer = try await a.send("call", ["gamma", "echo", .number(Double(i))])
                    #expect(answer == ["from": "alpha", "to": "gamma", "args": [.number(Double(i))]])
                }
            }
            try await group.waitForAll()
        }
        await a.close()
        await b.close()
        await c.close()
    }
}
