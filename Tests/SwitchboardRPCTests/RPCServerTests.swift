import Foundation
import Switchboard
import SwitchboardClient
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing

/// A real broker speaking RPC on 127.0.0.1 (ephemeral port), two shards. Node ids come from
/// the query string (`/?id=NAME`), else generated.
final class RPCTestServer: @unchecked Sendable {
    let broker: Broker
    let rpc: RPCServer
    var port: Int { broker.port }

    init(backend: IOBackendKind, policy: RPCDuplicateNodePolicy = .replaceOld, shards: Int = 2) throws {
        raiseFileLimit()
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = shards
        c.io.backend = backend
        c.io.tickMilliseconds = 10
        c.webSocket.perMessageDeflate = false
        var o = RPCServerOptions()
        o.duplicateNodes = policy
        o.requestTimeoutMilliseconds = 2000
        rpc = RPCServer(options: o, nodeId: { request in
            request.query.hasPrefix("id=") ? String(request.query.dropFirst(3)) : nil
        }) { node in
            node.client.on("echo") { _, args in .array(args) }
            node.client.on("drop") { ctx, _ in
                ctx.node.close(final: false)
                return nil
            }
            node.client.on("shard") { ctx, _ in .number(Double(ctx.node.shardIndex)) }
            node.client.on("call") { ctx, args in
                try await ctx.node.server.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
            }
            node.client.on("relay") { ctx, args in
                try await ctx.node.remoteClient.send(to: args[0].stringValue!, args[1].stringValue!, Array(args.dropFirst(2)))
            }
            node.client.on("ask") { ctx, args in
                try await ctx.node.client.send(args[0].stringValue!, Array(args.dropFirst(2)), timeoutMilliseconds: Int(args[1].numberValue!))
            }
            node.server.on("echo") { ctx, args in ["from": .string(ctx.sender ?? ""), "to": .string(ctx.node.id), "args": .array(args)] }
            node.remoteClient.on("tagged") { ctx, _ in .array((ctx.result.arrayValue ?? []) + [.string("tag:\(ctx.node.id)")]) }
        }
        broker = Broker(configuration: c, logger: .discarding, handlerFactory: rpc.handlerFactory())
        try broker.start()
    }

    func stop() { broker.shutdown(graceMilliseconds: 1000) }

    func client(_ id: String? = nil, options: RPCClientOptions = RPCClientOptions()) async throws -> RPCClient {
        let c = RPCClient(url: "ws://127.0.0.1:\(port)/" + (id.map { "?id=\($0)" } ?? ""), options: options)
        try await c.waitUntilReady()
        return c
    }

    /// Clients with the given ids on shard 0 and shard 1 respectively (connecting extra
    /// throwaway clients until the acceptor's placement lands one on each).
    func clientsOnBothShards(_ a: String, _ b: String) async throws -> (RPCClient, RPCClient) {
        var byShard: [Int: RPCClient] = [:]
        for i in 0..<16 where byShard.count < 2 {
            let id = byShard[0] == nil ? "\(a)-\(i)" : "\(b)-\(i)"
            let c = try await client(id)
            let shard = Int(try await c.send("shard").doubleValue!)
            if byShard[shard] == nil, (shard == 0 ? id.hasPrefix(a) : true) { byShard[shard] = c } else { await c.close() }
        }
        guard let c0 = byShard[0], let c1 = byShard[1] else { throw RPCTestFailure("could not place clients on both shards") }
        return (c0, c1)
    }
}

@Suite("RPC: server over real sockets", .serialized)
struct RPCServerTests {
    static let backends: [IOBackendKind] = [.uring, .epoll]

    func id(of c: RPCClient) async throws -> String {
        String(c.url.split(separator: "=").last!)
    }

    @Test("client, server and remote client requests across two shards", arguments: backends)
    func threeFormsAcrossShards(_ backend: IOBackendKind) async throws {
        let server = try RPCTestServer(backend: backend)
        defer { server.stop() }
        let (a, b) = try await server.clientsOnBothShards("a", "b")
        let aId = try await id(of: a), bId = try await id(of: b)
        b.on("greet") { args in .string("b's client got \(try JSONValue.array(args).jsonString())") }
        // client request
        #expect(try await a.send("echo", [1, "two", ["k": nil]]) == [1, "two", ["k": nil]])
        // server request: node a (shard 0) -> node b (shard 1)
        #expect(try await a.send("call", [.string(bId), "echo", 7]) == ["from": .string(aId), "to": .string(bId), "args": [7]])
        // remote client request: node a -> node b -> b's client (passed through, then edited)
        #expect(try await a.send("relay", [.string(bId), "greet", "hi"]) == #"b's client got ["hi"]"#)
        b.on("tagged") { args in .array(args) }
        #expect(try await a.send("relay", [.string(bId), "tagged", "x"]) == ["x", .string("tag:\(bId)")])
        // unhandled, across the shard boundary and locally
        do {
            _ = try await a.send("call", [.string(bId), "nothing"])
            Issue.record("no error")
        } catch { #expect(error == .unhandled(name: "nothing")) }
        do {
            _ = try await a.send("nothing")
            Issue.record("no error")
        } catch { #expect(error == .unhandled(name: "nothing")) }
        await a.close()
        await b.close()
    }

    @Test("timeouts: the node's own request timeout and the client's", arguments: backends)
    func timeouts(_ backend: IOBackendKind) async throws {
        let server = try RPCTestServer(backend: backend)
        defer { server.stop() }
        let c = try await server.client("t")
        c.on("hang") { _ in try await Task.sleep(for: .seconds(3600)); return nil }
        let start = ContinuousClock.now
        do {
            _ = try await c.send("ask", ["hang", 150])
            Issue.record("no error")
        } catch { #expect(error == .timeout) }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(150) && elapsed < .seconds(2))
        do {
            _ = try await c.send("ask", ["hang", 60_000], timeout: .milliseconds(100))
            Issue.record("no error")
        } catch { #expect(error == .timeout) }
        #expect(try await c.send("echo", [1]) == [1])
        // A name the Swift client has no handler for: its unhandled error reaches the node.
        do {
            _ = try await c.send("ask", ["no-handler", 1000])
            Issue.record("no error")
        } catch { #expect(error == .unhandled(name: "no-handler")) }
        await c.close()
    }

    @Test("a peer vanishing mid-request fails the caller at once", arguments: backends)
    func peerVanishes(_ backend: IOBackendKind) async throws {
        let server = try RPCTestServer(backend: backend)
        defer { server.stop() }
        let (a, b) = try await server.clientsOnBothShards("va", "vb")
        let bId = try await id(of: b)
        let reached = Locked(false)
        b.on("hang") { _ in reached.withLock { $0 = true }; try await Task.sleep(for: .seconds(3600)); return nil }
        let start = ContinuousClock.now
        let call = Task { () async -> Result<JSONValue, RPCClientError> in
            do throws(RPCClientError) { return .success(try await a.send("relay", [.string(bId), "hang"], timeout: .seconds(30))) } catch { return .failure(error) }
        }
        try await waitUntil { reached.withLock { $0 } }
        await b.close()
        let r = await call.value
        #expect(r == .failure(.protocolError(subtype: nil, message: "Node disconnected", data: ["reason": "disconnected"])))
        #expect(ContinuousClock.now - start < .seconds(2))  // the node's own timeout is 2 s
        await a.close()
    }

    @Test("duplicate node ids under each policy", arguments: backends)
    func duplicates(_ backend: IOBackendKind) async throws {
        for policy in RPCDuplicateNodePolicy.allCases {
            let server = try RPCTestServer(backend: backend, policy: policy)
            defer { server.stop() }
            let first = try await server.client("dup")
            switch policy {
            case .replaceOld:
                let second = try await server.client("dup")
                // The old client got {"type":"close"} and stops for good: its sends fail `closed`.
                var outcome: RPCClientError? = nil
                for _ in 0..<500 where outcome == nil {
                    do { _ = try await first.send("echo", [], timeout: .milliseconds(500)) } catch { outcome = error }
                    if outcome == nil { try await Task.sleep(for: .milliseconds(5)) }
                }
                #expect(outcome == .closed)
                #expect(try await second.send("echo", [2]) == [2])
                await second.close()
            case .refuseNew:
                let second = RPCClient(url: "ws://127.0.0.1:\(server.port)/?id=dup")
                do { try await second.waitUntilReady(); Issue.record("second node accepted") } catch { #expect(error == .closed) }
                #expect(try await first.send("echo", [1]) == [1])
            case .allowBoth:
                let second = try await server.client("dup")
                let caller = try await server.client("caller")
                first.on("who") { _ in "first" }
                second.on("who") { _ in "second" }
                let answer = try await caller.send("relay", ["dup", "who"])
                #expect(answer == "first" || answer == "second")
                #expect(try await first.send("echo", [1]) == [1])
                #expect(try await second.send("echo", [2]) == [2])
                await second.close()
                await caller.close()
            }
            await first.close()
        }
    }

    @Test("1,000 concurrent requests in flight per client", arguments: backends)
    func thousandConcurrent(_ backend: IOBackendKind) async throws {
        let server = try RPCTestServer(backend: backend)
        defer { server.stop() }
        let c = try await server.client("many")
        let results = try await withThrowingTaskGroup(of: (Int, JSONValue).self) { group in
            for i in 0..<1000 { group.addTask { (i, try await c.send("echo", [.number(Double(i))], timeout: .seconds(20))) } }
            var all: [Int: JSONValue] = [:]
            for try await (i, r) in group { all[i] = r }
            return all
        }
        #expect(results.count == 1000)
        #expect(results.allSatisfy { $0.value == [.number(Double($0.key))] })
        await c.close()
    }

    @Test("the client reconnects after a drop; requests made meanwhile wait and succeed", arguments: backends)
    func reconnects(_ backend: IOBackendKind) async throws {
        let server = try RPCTestServer(backend: backend)
        defer { server.stop() }
        var o = RPCClientOptions()
        o.reconnectBaseDelay = .milliseconds(20)
        let c = try await server.client("re", options: o)
        _ = try? await c.send("drop", [], timeout: .milliseconds(300))
        // Sent while the connection is down or being re-established: queued, then answered.
        #expect(try await c.send("echo", ["after"], timeout: .seconds(5)) == ["after"])
        #expect(server.rpc.metrics.nodes.value == 1)
        await c.close()
    }

}
