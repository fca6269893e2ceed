import Foundation
@testable import SwitchboardProtocols
import Switchboard
import Synchronization
import Testing

/// The RPC core's semantics on in-memory shards: handler chains, patterns, ctx.pass, error
/// mapping, routing between shards, vanishing peers, duplicate-id policies, bounds, pings.
@Suite("RPC: core semantics (in-memory shards)")
struct RPCCoreTests {
    static func options(_ change: (inout RPCServerOptions) -> Void = { _ in }) -> RPCServerOptions {
        var o = RPCServerOptions()
        o.pingIntervalMilliseconds = 0
        o.initDelayMilliseconds = 0
        change(&o)
        return o
    }

    @Test("handler chains run in order with ctx.result; patterns interleave by registration order")
    func chainsAndPatterns() async throws {
        let shards = FakeShards(options: Self.options()) { node in
            node.client.on("sum") { _, args in .number(args.compactMap(\.numberValue).reduce(0, +)) }
            node.client.on("sum") { ctx, _ in .number((ctx.result.numberValue ?? 0) * 10) }
            node.client.on("user.*") { ctx, _ in .string("pattern saw \(ctx.result)") }
            node.client.on("user.get") { ctx, _ in .string("exact after: \(ctx.result.stringValue ?? "")") }
            node.client.on("*.end") { _, _ in "tail" }
        }
        let c = try await shards.connect(shard: 0, id: "a")
        c.send(#"{"type":"request","name":"sum","args":[1,2,3],"correlationId":"1"}"#)
        #expect(try await c.nextNonPing() == #"{"type":"response","correlationId":"1","result":60}"#)
        c.send(#"{"type":"request","name":"user.get","args":[],"correlationId":"2"}"#)
        #expect(try await c.nextNonPing() == #"{"type":"response","correlationId":"2","result":"exact after: pattern saw null"}"#)
        c.send(#"{"type":"request","name":"user.end","args":[],"correlationId":"3"}"#)
        #expect(try await c.nextNonPing() == #"{"type":"response","correlationId":"3","result":"tail"}"#)
        c.send(#"{"type":"request","name":"users","args":[],"correlationId":"4"}"#)
        #expect(try await c.nextNonPing()
                == #"{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request 'users'","data":{"requestName":"users"},"type":"error","correlationId":"4"}"#)
    }

    @Test("glob matching", arguments: [
        ("*", "", true), ("*", "abc", true), ("a*", "abc", true), ("a*c", "abc", true), ("a*c", "abd", false),
        ("*b*", "abc", true), ("a**c", "ac", true), ("a*b*c", "axbyc", true), ("a*b*c", "axbyd", false), ("é*", "éx", true),
    ] as [(String, String, Bool)])
    func glob(_ pattern: String, _ name: String, _ expected: Bool) {
        #expect(RPCHandlerRegistry.glob(Array(pattern.utf8), Array(name.utf8)) == expected)
    }

    @Test("errors: ctx.throw, plain Swift errors, thrown RPCErrors pass through unchanged")
    func errorMapping() async throws {
        let shards = FakeShards(options: Self.options()) { node in
            node.client.on("council") { ctx, _ in try ctx.throw("take a seat", ["council": true, "master": false]) }
            node.client.on("plain") { _, _ in throw Oops() }
            node.client.on("relay-unhandled") { _, _ in throw RPCError.unhandled(name: "kamino") }
            node.client.on("relay-timeout") { _, _ in throw RPCError.timeout }
            node.client.on("stops-chain") { _, _ in throw RPCError.endpoint(message: "first", data: nil) }
            node.client.on("stops-chain") { _, _ in Issue.record("second handler ran"); return nil }
        }
        let c = try await shards.connect(shard: 0, id: "a")
        let cases = [
            ("council", #"{"errorType":"endpoint","errorSubtype":null,"message":"take a seat","data":{"council":true,"master":false},"type":"error","correlationId":"x"}"#),
            ("plain", #"{"errorType":"endpoint","errorSubtype":null,"message":"clone","data":null,"type":"error","correlationId":"x"}"#),
            ("relay-unhandled", #"{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request 'kamino'","data":{"requestName":"kamino"},"type":"error","correlationId":"x"}"#),
            ("relay-timeout", #"{"errorType":"protocol","errorSubtype":"timeout","message":"Request timed out","data":null,"type":"error","correlationId":"x"}"#),
            ("stops-chain", #"{"errorType":"endpoint","errorSubtype":null,"message":"first","data":null,"type":"error","correlationId":"x"}"#),
        ]
        for (name, expected) in cases {
            c.send(#"{"type":"request","name":""# + name + #"","args":[],"correlationId":"x"}"#)
            #expect(try await c.nextNonPing() == expected, "\(name)")
        }
        // Received errors map back to the typed cases.
        #expect(RPCError(received: .unhandled("n")) == .unhandled(name: "n"))
        #expect(RPCError(received: .timeout) == .timeout)
        #expect(RPCError(received: RPCError.disconnected.payload) == .disconnected)
        #expect(RPCError(received: RPCError.overloaded.payload) == .overloaded)
        #expect(RPCError(received: .endpoint("m", data: [1])) == .endpoint(message: "m", data: [1]))
    }

    @Test("a node's request to its client waits for init, then resolves; errors and timeouts are typed")
    func nodeToClient() async throws {
        let results = Locked<[String: Result<RPCValue, RPCError>]>([:])
        let shards = FakeShards(options: Self.options { $0.initDelayMilliseconds = 20 }) { node in
            Task {
                let r: Result<RPCValue, RPCError>
                do throws(RPCError) { r = .success(try await node.client.send("whoami")) } catch { r = .failure(error) }
                results.withLock { $0["whoami"] = r }
            }
        }
        let c = try await shards.connect(shard: 1, id: "n1", expectInit: false)
        #expect(try await c.next() == #"{"type":"init"}"#)  // init strictly first
        let req = try await c.nextJSON()
        #expect(req["type"] as? String == "request" && req["name"] as? String == "whoami" && (req["args"] as? [Any])?.isEmpty == true)
        let id = req["correlationId"] as! String
        c.send(#"{"type":"response","correlationId":""# + id + #""}"#)  // result omitted, as a JS handler returning undefined
        try await waitUntil { results.withLock { $0["whoami"] } != nil }
        #expect(results.withLock { $0["whoami"] } == .success(.null))
        // endpoint error from the client
        let node = c.node!
        let failed = Task { () async -> Result<RPCValue, RPCError> in
            do throws(RPCError) { return .success(try await node.client.send("x", [1])) } catch { return .failure(error) }
        }
        let r2 = try await c.nextJSON()
        c.send(#"{"errorType":"endpoint","errorSubtype":null,"message":"no","data":{"d":1},"type":"error","correlationId":""# + (r2["correlationId"] as! String) + #""}"#)
        #expect(await failed.value == .failure(.endpoint(message: "no", data: ["d": 1])))
        // a stray and a duplicate answer are ignored
        c.send(#"{"type":"response","correlationId":""# + (r2["correlationId"] as! String) + #"","result":1}"#)
        c.send(#"{"type":"pong","correlationId":"never-sent"}"#)
        // timeout
        let start = ContinuousClock.now
        do throws(RPCError) {
            _ = try await node.client.send("slow", [], timeoutMilliseconds: 50)
            Issue.record("no timeout")
        } catch {
            #expect(error == .timeout)
        }
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        try await waitUntil { shards.shared.metrics.strayAnswers.value == 2 }
    }

    @Test("server requests across shards carry ctx.sender; unknown ids fail as disconnected")
    func serverRequests() async throws {
        let shards = FakeShards(options: Self.options()) { node in
            node.server.on("who") { ctx, args in .string("\(ctx.node.id) asked by \(ctx.sender ?? "?") with \(RPCValue.array(args))") }
        }
        let a = try await shards.connect(shard: 0, id: "alpha")
        _ = try await shards.connect(shard: 1, id: "beta")
        let r = try await a.node.server.send(to: "beta", "who", [1, "x"])
        #expect(r == "beta asked by alpha with [1,\"x\"]")
        await #expect(throws: RPCError.unhandled(name: "nope")) { try await a.node.server.send(to: "beta", "nope") }
        await #expect(throws: RPCError.disconnected) { try await a.node.server.send(to: "nobody", "who") }
    }

    @Test("remote client requests: pass edits the args, pass=false answers directly, no handler passes through")
    func remoteClient() async throws {
        let shards = FakeShards(options: Self.options()) { node in
            node.remoteClient.on("greet") { ctx, _ in
                #expect(ctx.pass && ctx.result == ["hi"])
                return .array((ctx.result.arrayValue ?? []) + [.string("via \(ctx.node.id) from \(ctx.sender ?? "")")])
            }
            node.remoteClient.on("blocked") { ctx, _ in
                ctx.pass = false
                return "answered by the node"
            }
        }
        let a = try await shards.connect(shard: 0, id: "alpha")
        let b = try await shards.connect(shard: 1, id: "beta")
        let node = a.node!
        let greeted = Task { try await node.remoteClient.send(to: "beta", "greet", ["hi"]) }
        let req = try await b.nextJSON()
        #expect(req["name"] as? String == "greet")
        #expect(req["args"] as? [String] == ["hi", "via beta from alpha"])
        b.send(#"{"type":"response","correlationId":""# + (req["correlationId"] as! String) + #"","result":"hello back"}"#)
        #expect(try await greeted.value == "hello back")
        #expect(try await node.remoteClient.send(to: "beta", "blocked") == "answered by the node")
        let plain = Task { try await node.remoteClient.send(to: "beta", "untouched", [1, 2]) }
        let req2 = try await b.nextJSON()
        #expect(req2["name"] as? String == "untouched" && req2["args"] as? [Int] == [1, 2])
        b.send(#"{"errorType":"endpoint","errorSubtype":null,"message":"client says no","data":null,"type":"error","correlationId":""# + (req2["correlationId"] as! String) + #""}"#)
        await #expect(throws: RPCError.endpoint(message: "client says no", data: nil)) { try await plain.value }
    }

    @Test("a peer vanishing mid-request fails its callers at once; so does the caller's own node")
    func vanishing() async throws {
        let shards = FakeShards(options: Self.options { $0.requestTimeoutMilliseconds = 60_000 }) { node in
            node.server.on("hang") { _, _ in try await Task.sleep(for: .seconds(3600)); return nil }
        }
        let a = try await shards.connect(shard: 0, id: "alpha")
        let b = try await shards.connect(shard: 1, id: "beta")
        let node = a.node!
        let start = ContinuousClock.now
        let hung = Task { try await node.server.send(to: "beta", "hang") }
        try await waitUntil { shards.sync(1) { $0.inboundCount } == 1 }  // beta is serving it
        b.disconnect()
        await #expect(throws: RPCError.disconnected) { try await hung.value }
        #expect(ContinuousClock.now - start < .seconds(5))
        // The caller's own node going away fails its pending requests too.
        _ = try await shards.connect(shard: 1, id: "gamma")
        let ownGone = Task { try await node.server.send(to: "gamma", "hang") }
        try await waitUntil { shards.sync(0) { $0.pendingCount } == 1 }
        a.disconnect()
        await #expect(throws: RPCError.disconnected) { try await ownGone.value }
        await #expect(throws: RPCError.disconnected) { try await node.client.send("x") }
        #expect(!node.isOpen)
    }

    @Test("duplicate ids: replaceOld closes the old node with {type:close}")
    func duplicateReplace() async throws {
        let shards = FakeShards(options: Self.options { $0.duplicateNodes = .replaceOld })
        let old = try await shards.connect(shard: 0, id: "same")
        _ = try await shards.connect(shard: 1, id: "same")
        #expect(try await old.next() == #"{"type":"close"}"#)
        #expect(try await old.next() == nil)
        #expect(old.closedWith?.code == 1000)
        let owner = RPCShared.ownerShard(of: "same", shardCount: 2)
        try await waitUntil { shards.sync(owner) { $0.directoryCount("same") } == 1 }
    }

    @Test("duplicate ids: refuseNew closes the new connection before init")
    func duplicateRefuse() async throws {
        let shards = FakeShards(options: Self.options { $0.duplicateNodes = .refuseNew })
        let first = try await shards.connect(shard: 0, id: "same")
        let second = try await shards.connect(shard: 1, id: "same", expectInit: false)
        #expect(try await second.next() == #"{"type":"close"}"#)
        #expect(try await second.next() == nil)
        #expect(second.closedWith?.code == 1008 && second.closedWith?.reason == "duplicate node id")
        #expect(!first.isClosed)
    }

    @Test("duplicate ids: allowBoth delivers to both, first answer wins")
    func duplicateAllowBoth() async throws {
        let shards = FakeShards(options: Self.options { $0.duplicateNodes = .allowBoth })
        let caller = try await shards.connect(shard: 0, id: "caller")
        let one = try await shards.connect(shard: 0, id: "same")
        let two = try await shards.connect(shard: 1, id: "same")
        let node = caller.node!
        let answer = Task { try await node.remoteClient.send(to: "same", "q") }
        let r1 = try await one.nextJSON()
        let r2 = try await two.nextJSON()
        two.send(#"{"type":"response","correlationId":""# + (r2["correlationId"] as! String) + #"","result":2}"#)
        #expect(try await answer.value == 2)
        one.send(#"{"type":"response","correlationId":""# + (r1["correlationId"] as! String) + #"","result":1}"#)
        #expect(!one.isClosed && !two.isClosed)
    }

    @Test("hostile input is answered, pings are answered at once, and the node keeps working")
    func hostileAndPing() async throws {
        let shards = FakeShards(options: Self.options()) { node in node.client.on("echo") { _, args in .array(args) } }
        let c = try await shards.connect(shard: 0, id: "a")
        c.send("not json")
        #expect(try await c.nextNonPing() == #"{"errorType":"protocol","errorSubtype":null,"message":"Message is not valid JSON","data":{"reason":"notJSON"},"type":"error","correlationId":null}"#)
        c.send("null")
        #expect(try await c.nextNonPing()?.contains(#""reason":"notAnObject""#) == true)
        c.send(#"{"type":"request","name":"echo","args":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + #","correlationId":"d"}"#)
        #expect(try await c.nextNonPing()?.contains(#""reason":"tooDeep""#) == true)
        c.send(#"{"type":"error","message":"unreadable error is not answered"}"#)
        c.send(#"{"type":"ping","correlationId":"foo"}"#)
        #expect(try await c.next() == #"{"type":"pong","correlationId":"foo"}"#)
        c.send(#"{"type":"request","name":"echo","args":[1],"correlationId":"e"}"#)
        #expect(try await c.nextNonPing() == #"{"type":"response","correlationId":"e","result":[1]}"#)
    }

    @Test("requests in flight per node are bounded: the excess is answered overloaded")
    func inflightBound() async throws {
        let shards = FakeShards(options: Self.options { $0.maxInflightPerNode = 1; $0.maxPendingPerNode = 1 }) { node in
            node.client.on("hang") { _, _ in try await Task.sleep(for: .seconds(3600)); return nil }
        }
        let c = try await shards.connect(shard: 0, id: "a")
        c.send(#"{"type":"request","name":"hang","args":[],"correlationId":"1"}"#)
        c.send(#"{"type":"request","name":"hang","args":[],"correlationId":"2"}"#)
        #expect(try await c.nextNonPing() == #"{"errorType":"protocol","errorSubtype":null,"message":"Too many requests in flight","data":{"reason":"overloaded"},"type":"error","correlationId":"2"}"#)
        let node = c.node!
        let first = Task { try await node.client.send("a", timeoutMilliseconds: 10_000) }
        _ = try await c.nextJSON()
        await #expect(throws: RPCError.overloaded) { try await node.client.send("b") }
        c.disconnect()
        await #expect(throws: RPCError.disconnected) { try await first.value }
    }

    @Test("the deadline heap stays bounded when answered requests leave stale entries")
    func deadlineHeapBounded() async throws {
        let shards = FakeShards(options: Self.options { $0.requestTimeoutMilliseconds = 600_000 })
        let c = try await shards.connect(shard: 0, id: "a")
        let node = c.node!
        for i in 0..<3000 {
            let t = Task { try await node.client.send("x", [.number(Double(i))]) }
            let r = try await c.nextJSON()
            c.send(#"{"type":"response","correlationId":""# + (r["correlationId"] as! String) + #"","result":1}"#)
            #expect(try await t.value == 1)
        }
        #expect(shards.sync(0) { $0.pendingCount } == 0)
        #expect(shards.sync(0) { $0.deadlineCount } <= 1025)
    }

    @Test("a client that does not answer pings is closed with 1001")
    func pingTimeout() async throws {
        let shards = FakeShards(options: Self.options { $0.pingIntervalMilliseconds = 20; $0.pingTimeoutMilliseconds = 60 })
        let c = try await shards.connect(shard: 0, id: "a")
        var pings = 0
        while let m = try await c.next() {
            #expect(m.hasPrefix(#"{"type":"ping","correlationId":"sb-ping-"#))
            pings += 1
        }
        #expect(pings >= 2)
        #expect(c.closedWith?.code == 1001 && c.closedWith?.reason == "ping timeout")
        #expect(shards.shared.metrics.pingTimeouts.value == 1)
    }
}

/// Waits (polling, 1 ms) for a condition, failing after `seconds`.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while !condition() {
        if ContinuousClock.now > deadline { throw RPCTestFailure("condition not met within \(seconds) s") }
        try await Task.sleep(for: .milliseconds(1))
    }
}

struct Oops: Error, CustomStringConvertible { var description: String { "clone" } }

/// A lock-protected value shareable between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
