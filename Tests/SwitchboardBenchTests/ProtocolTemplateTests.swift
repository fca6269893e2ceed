import CJWTTestSupport
import Foundation
import Synchronization
import Switchboard
import SwitchboardBenchCore
import SwitchboardJWT
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

// The protocol templates (issue 16 item 8) run briefly against real servers in this process
// (both I/O backends) and must pass; against servers that answer wrongly they must fail.

private let templateBackends: [IOBackendKind] = [.uring, .epoll]

private func brokerConfiguration(_ backend: IOBackendKind) -> BrokerConfiguration {
    raiseFileLimit()
    var c = BrokerConfiguration()
    c.host = "127.0.0.1"
    c.port = 0
    c.io.backend = backend
    c.io.shardCount = 2
    c.io.recvBufferCount = 256
    c.io.tickMilliseconds = 10
    c.sendDateHeader = false
    c.webSocket.perMessageDeflate = false
    return c
}

private func templateOptions(_ args: [String]) throws -> TemplateOptions {
    do {
        return try parseTemplateArguments(args)
    } catch {
        Issue.record("usage error: \(error.description)")
        throw error
    }
}

/// Runs a template on its own thread: the template blocks its thread for the whole run, and
/// the RPC server's handlers are tasks that need the cooperative pool (2 threads on 2 cores).
private func run(_ args: [String]) async throws -> TemplateRun {
    let options = try templateOptions(args)
    let outcome: Result<TemplateRun, BenchError> = await withCheckedContinuation { c in
        let t = Thread {
            do throws(BenchError) { c.resume(returning: .success(try runTemplate(options))) } catch { c.resume(returning: .failure(error)) }
        }
        t.start()
    }
    return try outcome.get()
}

/// An RPC server with switchboard-rpc-example's handlers (echo, node-id, call, relay); with
/// `wrong`, `echo` answers its arguments reversed.
private func rpcServer(_ backend: IOBackendKind, wrong: Bool = false) throws -> Broker {
    var options = RPCServerOptions()
    options.requestTimeoutMilliseconds = 5000
    let rpc = RPCServer(options: options) { node in
        let echo: RPCHandler = { _, args in .array(wrong ? args.reversed() : args) }
        node.client.on("echo", echo)
        node.server.on("echo", echo)
        node.client.on("node-id") { ctx, _ in .string(ctx.node.id) }
        node.client.on("call") { ctx, args in
            guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("call needs a node id and a name", nil) }
            return try await ctx.node.server.send(to: target, name, Array(args.dropFirst(2)))
        }
        node.client.on("relay") { ctx, args in
            guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("relay needs a node id and a name", nil) }
            return try await ctx.node.remoteClient.send(to: target, name, Array(args.dropFirst(2)))
        }
    }
    let broker = Broker(configuration: brokerConfiguration(backend), logger: .discarding, handlerFactory: rpc.handlerFactory())
    try broker.start()
    return broker
}

private let templateSecret = "bench-template-secret-of-32-bytes!!"

private func templateToken(scope: String) -> String {
    let now = Int(BroadcasterTimestamp.nowNanoseconds() / 1_000_000_000)
    let claims = #"{"sub":"bench","aud":"broadcaster","exp":\#(now + 3600),"iat":\#(now),"authorizedChannels":["bench"],"scope":["\#(scope)"]}"#
    let input = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
    var mac = [UInt8](repeating: 0, count: 64)
    let key = Array(templateSecret.utf8), bytes = Array(input.utf8)
    let n = sbt_hmac("SHA256", key, key.count, bytes, bytes.count, &mac)
    precondition(n == 32, "HMAC-SHA256 failed")
    return input + "." + Base64URL.encode(mac[0..<32])
}

private func broadcasterServer(_ backend: IOBackendKind) throws -> Broker {
    var o = BroadcasterOptions()
    o.verifier = JWTVerifier(keys: [try JWTKey(hmacSecret: Array(templateSecret.utf8))], configuration: .init(leewaySeconds: 30))
    o.apiKeys = APIKeySet(["bench-api-key"])
    let broadcaster = Broadcaster(options: o)
    let broker = Broker(configuration: brokerConfiguration(backend), logger: .discarding) { broadcaster.makeHandler($0) }
    try broker.start()
    return broker
}

/// A scripted connection broker (strict-profile replies) with one deliberate fault, to show the
/// broker template catches each kind of wrong answer.
final class FaultyConnectionBroker: Sendable {
    enum Fault: Sendable { case none, dropsTheFifthDelivery, acksTheFifthWithTheWrongId, corruptsTheFifthPayload, reordersTwoDeliveries }
    struct State {
        var ids: [Int32: String] = [:]
        var fds: [String: Int32] = [:]
        var channels: [String: (Int32, Int32)] = [:]
        var messages = 0
        var nextId = 100
        var held: (Int32, String)? = nil
    }
    let fault: Fault
    let state = Mutex(State())
    init(_ fault: Fault) { self.fault = fault }

    func handle(_ server: TestWebSocketServer, _ fd: Int32, _ payload: [UInt8]) {
        guard let m = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any], let type = m["type"] as? String else { return }
        let replyTo = m["id"] as? Int ?? 0
        func quoted(_ s: String) -> String { String(decoding: try! JSONSerialization.data(withJSONObject: s, options: .fragmentsAllowed), as: UTF8.self) }
        var out: [(Int32, String)] = []
        state.withLock { st in
            st.nextId += 1
            let id = st.nextId
            switch type {
            case "register":
                let cid = "conn-\(fd)"
                st.ids[fd] = cid; st.fds[cid] = fd
                out.append((fd, #"{"type":"registered","id":\#(id),"replyTo":\#(replyTo),"connectionId":"\#(cid)"}"#))
            case "open":
                guard let target = m["targetId"] as? String, let tfd = st.fds[target], let me = st.ids[fd] else { return }
                let ch = "chan-\(id)"
                st.channels[ch] = (fd, tfd)
                out.append((tfd, #"{"type":"incoming_channel","id":\#(id),"from":"\#(me)","channelId":"\#(ch)"}"#))
                out.append((fd, #"{"type":"channel_opened","id":\#(id),"replyTo":\#(replyTo),"channelId":"\#(ch)","targetId":"\#(target)"}"#))
            case "message":
                guard let ch = m["channelId"] as? String, let ends = st.channels[ch], var text = m["payload"] as? String else { return }
                st.messages += 1
                let fifth = st.messages == 5
                let peer = ends.0 == fd ? ends.1 : ends.0
                if fifth && fault == .corruptsTheFifthPayload { text += "!" }
                let delivery = #"{"type":"channel_message","id":\#(id),"channelId":"\#(ch)","payload":\#(quoted(text))}"#
                if fifth && fault == .reordersTwoDeliveries {
                    st.held = (peer, delivery)
                } else if !(fifth && fault == .dropsTheFifthDelivery) {
                    out.append((peer, delivery))
                    if let h = st.held, h.0 == peer { out.append(h); st.held = nil }  // after a later one: reordered
                }
                let ackId = fifth && fault == .acksTheFifthWithTheWrongId ? replyTo + 1 : replyTo
                out.append((fd, #"{"type":"channel_message_sent","id":\#(id),"replyTo":\#(ackId),"channelId":"\#(ch)"}"#))
            default:
                out.append((fd, #"{"type":"error","error":"Unknown message type","replyTo":\#(replyTo),"id":\#(id)}"#))
            }
            // Written under the lock, so the order above is the order on the wire.
            for (to, text) in out { server.sendText(to, text) }
        }
    }
}

@Suite(.serialized) struct ProtocolTemplateTests {
    @Test(arguments: [FaultyConnectionBroker.Fault.dropsTheFifthDelivery, .acksTheFifthWithTheWrongId, .corruptsTheFifthPayload, .reordersTwoDeliveries])
    func brokerCatchesEachKindOfWrongAnswer(fault: FaultyConnectionBroker.Fault) async throws {
        let fake = FaultyConnectionBroker(fault)
        let server = try TestWebSocketServer(mode: .script { s, fd, payload in fake.handle(s, fd, payload) })
        defer { server.stop() }
        let r = try await run(["broker", "--pairs", "1", "-w", "4", "-n", "20", "--drain", "1s", "ws://127.0.0.1:\(server.port)/"])
        #expect(!r.passed, "\(fault): \(r.summary)")
        #expect(r.failures.contains { $0.contains("wrong replies") || $0.contains("replies missing") }, "\(fault): \(r.failures)")
    }

    @Test func brokerPassesAgainstTheScriptedBrokerWithoutAFault() async throws {
        // The control for the test above: the same scripted server, no fault, passes.
        let fake = FaultyConnectionBroker(.none)
        let server = try TestWebSocketServer(mode: .script { s, fd, payload in fake.handle(s, fd, payload) })
        defer { server.stop() }
        let r = try await run(["broker", "--pairs", "1", "-w", "4", "-n", "20", "--drain", "1s", "ws://127.0.0.1:\(server.port)/"])
        #expect(r.passed, "\(r.summary)")
    }

    @Test(arguments: templateBackends)
    func brokerPairsPassAgainstTheConnectionBroker(backend: IOBackendKind) async throws {
        let broker = Broker(configuration: brokerConfiguration(backend), logger: .discarding,
                            handlerFactory: ConnectionBroker.handlerFactory())
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 500) }
        let r = try await run(["broker", "--pairs", "4", "-w", "4", "-n", "2000", "-s", "40", "ws://127.0.0.1:\(broker.port)/"])
        #expect(r.passed, "\(r.summary)")
        guard case .protocolRun(let result) = r, let phase = result.phases.first else { Issue.record("no phase"); return }
        #expect(phase.sent == 2000)
        #expect(phase.completed == 2000)
        #expect(phase.acknowledged >= 2000)
        #expect(phase.missing == 0 && phase.wrong == 0 && phase.errors == 0)
        #expect(phase.latency != nil)
    }

    @Test func brokerFailsAgainstAServerThatAnswersWrongly() async throws {
        // An echo server: `register` comes back as itself instead of `registered`.
        let server = try TestWebSocketServer(mode: .echo)
        defer { server.stop() }
        let r = try await run(["broker", "--pairs", "1", "-n", "10", "--connect-timeout", "2s", "ws://127.0.0.1:\(server.port)/"])
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("register") }, "\(r.failures)")
    }

    @Test(arguments: templateBackends)
    func rpcFormsPassAgainstTheRPCServer(backend: IOBackendKind) async throws {
        let broker = try rpcServer(backend)
        defer { broker.shutdown(graceMilliseconds: 500) }
        let r = try await run(["rpc", "--pairs", "2", "-w", "4", "-n", "400", "ws://127.0.0.1:\(broker.port)/"])
        #expect(r.passed, "\(r.summary)")
        guard case .protocolRun(let result) = r else { Issue.record("not a protocol run"); return }
        #expect(result.phases.map(\.name) == ["client", "server", "remote-client"])
        for p in result.phases {
            #expect(p.sent == 400 && p.completed == 400, "\(p.name): \(p.sent) sent, \(p.completed) completed")
        }
        // The remote-client form's requests were answered by the harness's peer clients.
        #expect((result.phases.last?.acknowledged ?? 0) >= 400)
    }

    @Test func rpcFailsWhenTheResultsAreWrong() async throws {
        let broker = try rpcServer(.epoll, wrong: true)
        defer { broker.shutdown(graceMilliseconds: 500) }
        let r = try await run(["rpc", "--forms", "client", "-n", "50", "ws://127.0.0.1:\(broker.port)/"])
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("wrong replies") }, "\(r.failures)")
    }

    @Test func rpcFailsAgainstAServerThatNeverSendsInit() async throws {
        let server = try TestWebSocketServer(mode: .silent)
        defer { server.stop() }
        let r = try await run(["rpc", "--forms", "client", "-n", "5", "--connect-timeout", "1s", "ws://127.0.0.1:\(server.port)/"])
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("init") }, "\(r.failures)")
    }

    @Test(arguments: templateBackends)
    func broadcasterRESTAndWebSocketPublishPass(backend: IOBackendKind) async throws {
        let broker = try broadcasterServer(backend)
        defer { broker.shutdown(graceMilliseconds: 500) }
        let rest = try await run(["broadcaster", "--subscribers", "20", "-n", "200", "--token", templateToken(scope: "subscribe"),
                            "--api-key", "bench-api-key", "-q", "--port", "\(broker.port)", "--host", "127.0.0.1"])
        #expect(rest.passed, "\(rest.summary)")
        guard case .fanout(let r) = rest else { Issue.record("not a fan-out run"); return }
        #expect(r.sent == 200 && r.received == 200 * 20 && r.sequenceMissing == 0)
        let ws = try await run(["broadcaster", "--subscribers", "5", "-n", "100", "--token", templateToken(scope: "subscribe"),
                          "--publish", "ws", "--publish-token", templateToken(scope: "publish"), "-q",
                          "ws://127.0.0.1:\(broker.port)/broadcaster/websocket"])
        #expect(ws.passed, "\(ws.summary)")
    }

    @Test func broadcasterFailsWhenNothingIsDelivered() async throws {
        // An echo server: the subscribers' set-up replies come back, no publish is delivered.
        let server = try TestWebSocketServer(mode: .echo)
        defer { server.stop() }
        let r = try await run(["broadcaster", "--subscribers", "3", "-n", "20", "--publish", "ws", "--drain", "500ms", "-q",
                         "ws://127.0.0.1:\(server.port)/broadcaster/websocket"])
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("deliveries missing") }, "\(r.failures)")
    }

    @Test func durationRunsWithAWarmUpLongerThanTheDrainPass() async throws {
        // The stall guard (nothing answered for --drain) counts warm-up answers as progress.
        let cb = Broker(configuration: brokerConfiguration(.epoll), logger: .discarding, handlerFactory: ConnectionBroker.handlerFactory())
        try cb.start()
        defer { cb.shutdown(graceMilliseconds: 500) }
        let broker = try await run(["broker", "--pairs", "2", "-d", "500ms", "--warmup", "1500ms", "--drain", "1s", "ws://127.0.0.1:\(cb.port)/"])
        #expect(broker.passed, "\(broker.summary)")
        let rpc = try rpcServer(.epoll)
        defer { rpc.shutdown(graceMilliseconds: 500) }
        let r = try await run(["rpc", "--forms", "client", "-d", "500ms", "--warmup", "1500ms", "--drain", "1s", "ws://127.0.0.1:\(rpc.port)/"])
        #expect(r.passed, "\(r.summary)")
        guard case .protocolRun(let result) = r, let phase = result.phases.first else { Issue.record("no phase"); return }
        #expect(phase.completed > 0 && phase.warmupCompleted > 0)
    }

    @Test func templateArgumentsAreChecked() {
        func problem(_ args: [String]) -> String? {
            do { _ = try parseTemplateArguments(args); return nil } catch { return error.message }
        }
        #expect(problem(["broker"])?.contains("missing target") == true)
        #expect(problem(["broker", "ws://10.0.0.1:80/"])?.contains("non-loopback") == true)
        #expect(problem(["broker", "--forms", "client", "ws://127.0.0.1:1/"])?.contains("rpc only") == true)
        #expect(problem(["rpc", "--forms", "nope", "ws://127.0.0.1:1/"])?.contains("--forms") == true)
        #expect(problem(["broadcaster", "--publish", "ws", "--api-key", "k", "ws://127.0.0.1:1/"]) != nil)
        #expect(problem(["broker", "--host", "127.0.0.1", "--port", "9", "--path", "/cb"]) == nil)
        #expect(isTemplateCommandLine(["rpc"]) && !isTemplateCommandLine(["echo"]))
        let help = TemplateCommand.helpMessage()
        for option in ["--pairs", "--forms", "--token", "--api-key", "--publish-token", "--role-prefix", "--host", "--port", "--path"] {
            #expect(help.contains(option), "help lacks \(option)")
        }
    }
}
