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
        init(_ id: Int, redisPort: Int, backend: IOBackendKind) throws {
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
                node.remoteClient.on("tagged") { ctx, _ in .array((ctx.result.arrayValue ?? []) + [.string("tag:\(ctx.node.id)")]) }
            }
            broker = Broker(configuration: .clusterTestNode(id, redisPort: redisPort, backend: backend), logger: .discarding,
                            handlerFactory: rpc.handlerFactory())
            try broker.start()
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
}
