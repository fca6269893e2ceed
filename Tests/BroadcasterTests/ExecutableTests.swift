import Foundation  // tests only: FileManager for the symlink
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The broadcaster in the `switchboard` executable: its `broadcaster_*` section in the generic
/// layering (`SWITCHBOARD_BROADCASTER_*`), the reference-environment compatibility layer, its
/// metrics in `/metrics`, and many subscribers on a server in its own process.
@Suite("Broadcaster: the switchboard executable", .serialized)
struct BroadcasterExecutableTests {
    /// `SWITCHBOARD_BROADCASTER_*` variables reach the section through the generic layering;
    /// the connection-broker protocol still serves every other path; the counters are samples
    /// in `/metrics`.
    @Test func environmentLayerMountsTheProtocolBeforeTheConnectionBroker() throws {
        let server = try BinaryServer(["--host", "127.0.0.1", "--port", "0", "--shards", "2"], environment: [
            "SWITCHBOARD_BROADCASTER_ENABLED": "true", "SWITCHBOARD_BROADCASTER_BASE_PATH": "/bc",
            "SWITCHBOARD_BROADCASTER_JWT_SECRET": testSecret, "SWITCHBOARD_BROADCASTER_API_KEYS": "k1|test-api-key",
        ])
        let health = try server.http("GET", "/bc/health")
        #expect(health.status == 200 && health.bodyText == "ok")
        let c = try server.client(path: "/bc/websocket")
        try c.expectResult(try c.call("auth", #"{"token":"\#(testToken())"}"#), #"{"success":true}"#)
        try c.expectResult(try c.call("subscribe", #"{"channel":"test-channel"}"#))
        let r = try server.http("POST", "/bc/publish", headers: ["Authorization: Bearer test-api-key"],
                                body: #"{"channel":"test-channel","event":"e","payload":{"n":1}}"#)
        #expect(r.status == 200, "\(r)")
        let b = try c.expectBroadcast()
        #expect(b["channel"] as? String == "test-channel" && b["event"] as? String == "e" && b["seq"] as? Int == 1)
        // Another path is the connection broker's (mounted on `*` after the broadcaster).
        let cb = try TestClient(port: server.port)
        #expect(try cb.upgrade(path: "/anything").status == 101)
        try cb.sendText(#"{"type":"register","role":"r"}"#)
        #expect(try cb.readFrame().text.contains("register"))
        let metrics = try server.http("GET", "/metrics").bodyText
        #expect(metrics.contains("# TYPE switchboard_broadcaster_publishes_rest_total counter\nswitchboard_broadcaster_publishes_rest_total 1\n"), "\(metrics)")
        #expect(metrics.contains(#"switchboard_broadcaster_calls_total{method="subscribe"} 1"#))
        #expect(metrics.contains("switchboard_broadcaster_connections 1\n"))
        #expect(metrics.contains("switchboard_cb_registrations_total 1\n"))
        #expect(!server.errorText.contains("ignoring environment variable"), "\(server.errorText)")
    }

    /// Started as `broadcaster` (a symlink), the executable reads the reference's environment:
    /// PORT, a short JWT_SECRET, API_KEYS split on `|`, BASE_PATH.
    @Test func compatibilityModeBySymlinkReadsTheReferenceEnvironment() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bc-compat-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("broadcaster").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: try switchboardExecutable())
        let secret = "short-secret"
        let server = try BinaryServer(executable: link, ["--host", "127.0.0.1"], environment: [
            "PORT": "0", "JWT_SECRET": secret, "API_KEYS": "first|second", "BASE_PATH": "/events",
        ])
        #expect(try server.http("GET", "/events/health").bodyText == "ok")
        let c = try server.client(path: "/events/websocket")
        try c.expectResult(try c.call("auth", #"{"token":"\#(testToken(secret: secret))"}"#), #"{"success":true}"#)
        try c.expectResult(try c.call("subscribe", #"{"channel":"test-channel"}"#))
        for key in ["first", "second"] {
            let r = try server.http("POST", "/events/publish", headers: ["Authorization: Bearer \(key)"],
                                    body: #"{"channel":"test-channel","event":"\#(key)","payload":"x"}"#)
            #expect(r.status == 200, "\(r)")
            #expect(try c.expectBroadcast()["event"] as? String == key)
        }
        #expect(try server.http("POST", "/events/publish", headers: ["Authorization: Bearer first|second"], body: "{}").status == 401)
    }

    /// Compatibility mode by variable; a missing reference variable stops start-up naming it.
    @Test func compatibilityModeByVariableRequiresTheReferenceVariables() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try switchboardExecutable())
        p.arguments = ["--host", "127.0.0.1"]
        p.environment = ["SWITCHBOARD_BROADCASTER_COMPAT": "1", "JWT_SECRET": "s", "PORT": "0"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 2)
        #expect(text == "switchboard: environment variable API_KEYS: required in compatibility mode\n", "\(text)")
    }
}

/// 10,000 subscribers over real sockets, the server in its own process: the test process holds
/// only the client sockets (in-process, client and server side would need two descriptors each).
@Suite("Broadcaster: 10,000 subscribers on one channel", .serialized)
struct BroadcasterScaleTests {
    static let subscribers = Int(ProcessInfo.processInfo.environment["BROADCASTER_SCALE_SUBSCRIBERS"] ?? "") ?? 10_000

    @Test("10,000 subscribers receive one REST publish, each exactly once with seq 1", arguments: backends)
    func tenThousandSubscribers(_ backend: IOBackendKind) throws {
        let count = Self.subscribers
        raiseFileLimit()
        // Clients, the server's sockets in the child, pipes and a margin: not a skip, a failure.
        try #require(fileLimit() >= count + 256, "RLIMIT_NOFILE \(fileLimit()) cannot hold \(count) client sockets")
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: backend, extra: ["recv_buffer_count=256"]))
        let started = ContinuousClock.now
        let token = testToken()
        // Upgrade, auth and subscribe pipelined in one write per client (no round trip per
        // client: the server must take frames that follow the upgrade request in one read).
        let opening = Array(("GET /broadcaster/websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
            + TestClient.frame(opcode: 1, payload: Array(#"{"id":1,"method":"auth","params":{"token":"\#(token)"}}"#.utf8))
            + TestClient.frame(opcode: 1, payload: Array(#"{"id":2,"method":"subscribe","params":{"channel":"test-channel"}}"#.utf8))
        var clients: [BCClient] = []
        clients.reserveCapacity(count)
        for _ in 0..<count {
            let c = try TestClient(port: server.port)
            try c.send(opening)
            clients.append(BCClient(c))
        }
        let connected = ContinuousClock.now
        var subscribedCount = 0
        for c in clients {
            let r = try c.socket.readResponse(headOnly: true)
            try #require(r.status == 101, "\(r)")
            // Exact bytes, not parsed: 20,000 replies through JSONSerialization would dominate.
            let auth = try c.readText(), subscribe = try c.readText()
            if auth == #"{"requestId":1,"result":{"success":true}}"# && subscribe.hasPrefix(#"{"requestId":2,"result":{"subscriptionId":""#) {
                subscribedCount += 1
            } else {
                Issue.record("unexpected replies: \(auth) \(subscribe)")
            }
        }
        try #require(subscribedCount == count)
        let subscribed = ContinuousClock.now
        let r = try server.http("POST", "/broadcaster/publish", headers: ["Authorization: Bearer test-api-key"],
                                body: #"{"channel":"test-channel","event":"all","payload":"hello"}"#)
        #expect(r.status == 200, "\(r)")
        var received = 0
        for c in clients {
            let b = try c.expectBroadcast()
            if b["event"] as? String == "all" && b["seq"] as? Int == 1 && b["payload"] as? String == "hello" { received += 1 }
        }
        #expect(received == count)
        // Exactly once: nothing else is queued for any of them (a sample; reading all would
        // wait the timeout per client).
        #expect(clients[0].receivesNothing(milliseconds: 100) && clients[count - 1].receivesNothing(milliseconds: 100))
        let metrics = try server.http("GET", "/metrics").bodyText
        #expect(metrics.contains("switchboard_broadcaster_deliveries_total \(count)\n"))
        #expect(metrics.contains("switchboard_broadcaster_subscriptions \(count)\n"))
        print("broadcaster scale (\(backend)): \(count) connected in \(connected - started), subscribed after \(subscribed - connected), delivered in \(ContinuousClock.now - subscribed)")
    }
}

/// The broadcaster scenario of `switchboard-bench` (Benchmarks/scripts/broadcaster-bench.sh)
/// against the real executable: it passes when every subscriber gets every message in order,
/// and fails loudly when the subscriptions do not deliver.
@Suite("Broadcaster: switchboard-bench fanout with auth + subscribe", .serialized)
struct BroadcasterBenchScenarioTests {
    private func bench(port: Int, channel: String, rest: String? = nil) throws -> (status: Int32, output: String) {
        let path = try switchboardExecutable().replacingOccurrences(of: "/switchboard", with: "/switchboard-bench",
                                                                  options: .backwards)
        var arguments = ["fanout", "ws://127.0.0.1:\(port)/broadcaster/websocket", "--subscribers", "200", "--publishers", "1",
                         "-n", "100", "-s", "24", "--warmup", "0s", "--drain", "3s", "--quiet",
                         "--subscribe-template", #"{"id":1,"method":"auth","params":{"token":"\#(testToken(channels: ["bench"]))"}}"#,
                         "--subscribe-template", #"{"id":2,"method":"subscribe","params":{"channel":"\#(channel)"}}"#,
                         "--setup-replies", "2"]
        if let rest {
            // REST publish: POST {base}/publish with the API key, body {channel, event, payload}.
            arguments += ["--publish-http", "/broadcaster/publish", "--publish-http-header", "Authorization: Bearer \(rest)",
                          "--publish-template", #"{"channel":"bench","event":"e","payload":"{{payload}}"}"#]
        } else {
            arguments += ["--publisher-setup", #"{"id":1,"method":"auth","params":{"token":"\#(testToken(channels: ["bench"], scope: ["publish"]))"}}"#,
                          "--publish-template", #"{"id":2,"method":"publish","params":{"channel":"bench","event":"e","payload":"{{payload}}"}}"#]
        }
        return try runTool(path, arguments)
    }

    @Test func everySubscriberGetsEveryPublishInOrder() throws {
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: .uring))
        let (status, output) = try bench(port: server.port, channel: "bench")
        #expect(status == 0, "\(output)")
        #expect(output.contains("expected deliveries 20000, received 20000"), "\(output)")
        #expect(output.contains("0 missing, 0 reordered, 0 from another channel"), "\(output)")
        #expect(output.contains("setup replies received by subscribers: 400"), "\(output)")
        #expect(output.contains("result: PASSED"), "\(output)")
    }

    @Test func restPublishesReachEverySubscriberInOrder() throws {
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: .epoll))
        let (status, output) = try bench(port: server.port, channel: "bench", rest: "test-api-key")
        #expect(status == 0, "\(output)")
        #expect(output.contains("expected deliveries 20000, received 20000"), "\(output)")
        #expect(output.contains("0 missing, 0 reordered, 0 from another channel"), "\(output)")
        #expect(output.contains("result: PASSED"), "\(output)")
    }

    @Test func aRefusedRestPublishFailsTheRun() throws {
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: .uring))
        let (status, output) = try bench(port: server.port, channel: "bench", rest: "wrong-key")
        #expect(status == 1, "\(output)")
        #expect(output.contains("HTTP publish answered 401"), "\(output)")
    }

    @Test func subscriptionsThatDoNotDeliverFailTheRun() throws {
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: .epoll))
        // "other" is not in the token: subscribe is answered with an error, nothing is delivered.
        let (status, output) = try bench(port: server.port, channel: "other")
        #expect(status == 1, "\(output)")
        #expect(output.contains("result: FAILED"), "\(output)")
    }
}
