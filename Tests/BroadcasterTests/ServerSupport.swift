import CJWTTestSupport
import Foundation  // tests only: JSONSerialization to read what the server sent, as a client would
import Switchboard
import SwitchboardJWT
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing

let backends: [IOBackendKind] = [.uring, .epoll]
let testSecret = "broadcaster-test-secret-of-32-bytes!!"

/// Wall time plus an offset the test moves (token expiry without waiting).
final class TestClock: Sendable {
    private let offsetNanoseconds = Atomic<Int64>(0)
    func advance(seconds: Int64) { offsetNanoseconds.wrappingAdd(seconds * 1_000_000_000, ordering: .relaxed) }
    var nanoseconds: Int64 { BroadcasterTimestamp.nowNanoseconds() + offsetNanoseconds.load(ordering: .relaxed) }
    var seconds: Int { Int(nanoseconds / 1_000_000_000) }
}

/// A real broker serving the broadcaster protocol on 127.0.0.1, ephemeral port.
final class BCServer: @unchecked Sendable {
    let broker: Broker
    let broadcaster: Broadcaster
    let clock = TestClock()
    var port: Int { broker.port }

    init(backend: IOBackendKind, shards: Int = 2, leewaySeconds: Int = 30,
         configure: (inout BroadcasterOptions) -> Void = { _ in },
         broker configureBroker: (inout BrokerConfiguration) -> Void = { _ in }) throws {
        raiseFileLimit()
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.backend = backend
        c.io.shardCount = shards
        c.io.recvBufferCount = 256
        c.io.tickMilliseconds = 10
        c.sendDateHeader = false
        c.webSocket.perMessageDeflate = false
        configureBroker(&c)
        var o = BroadcasterOptions()
        o.verifier = JWTVerifier(keys: [try JWTKey(hmacSecret: Array(testSecret.utf8))],
                                 configuration: .init(leewaySeconds: leewaySeconds))
        o.apiKeys = APIKeySet(["test-api-key"])
        o.expiryCheckIntervalMilliseconds = 20
        configure(&o)
        let clock = self.clock
        let broadcaster = Broadcaster(options: o, now: { clock.nanoseconds })
        self.broadcaster = broadcaster
        broker = Broker(configuration: c, logger: .discarding) { broadcaster.makeHandler($0) }
        try broker.start()
    }

    deinit { broker.shutdown(graceMilliseconds: 500) }

    /// A WebSocket client on `{base}/websocket`.
    func client(path: String? = nil, timeoutMilliseconds: Int = 5000) throws -> BCClient {
        let c = try TestClient(port: port, receiveTimeoutMilliseconds: timeoutMilliseconds)
        let r = try c.upgrade(path: path ?? broadcaster.options.webSocketPath)
        #expect(r.status == 101, "\(r)")
        return BCClient(c)
    }

    /// A client authenticated with a token for `channels` and `scope`.
    func authed(sub: String = "user-1", channels: [String] = ["test-channel"], scope: [String] = ["subscribe"]) throws -> BCClient {
        let c = try client()
        let id = try c.call("auth", #"{"token":"\#(token(sub: sub, channels: channels, scope: scope))"}"#)
        try c.expectResult(id, #"{"success":true}"#)
        return c
    }

    func token(sub: String = "user-1", channels: [String] = ["test-channel"], scope: [String] = ["subscribe"],
               expiresIn: Int = 3600) -> String {
        let channelsJSON = "[" + channels.map { "\"\($0)\"" }.joined(separator: ",") + "]"
        let scopeJSON = "[" + scope.map { "\"\($0)\"" }.joined(separator: ",") + "]"
        let now = clock.seconds
        let claims = #"{"sub":"\#(sub)","aud":"broadcaster","exp":\#(now + expiresIn),"iat":\#(now),"authorizedChannels":\#(channelsJSON),"scope":\#(scopeJSON)}"#
        return hs256(claims, secret: testSecret)
    }

    /// One HTTP request on a fresh connection; returns the response.
    func http(_ method: String, _ path: String, headers: [String] = [], body: String = "") throws -> TestResponse {
        let c = try TestClient(port: port)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: t\r\n"
        for h in headers { head += h + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.utf8.count)\r\n" }
        try c.send(head + "\r\n" + body)
        return try c.readResponse()
    }

    func restPublish(_ body: String, key: String = "Bearer test-api-key") throws -> TestResponse {
        try http("POST", broadcaster.options.publishPath, headers: ["Authorization: \(key)", "Content-Type: application/json"], body: body)
    }
}

func hs256(_ claims: String, secret: String, header: String = #"{"alg":"HS256","typ":"JWT"}"#) -> String {
    let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
    var mac = [UInt8](repeating: 0, count: 64)
    let key = Array(secret.utf8)
    let inputBytes = Array(input.utf8)
    let n = sbt_hmac("SHA256", key, key.count, inputBytes, inputBytes.count, &mac)
    precondition(n == 32)
    return input + "." + Base64URL.encode(mac[0..<32])
}

typealias JSON = [String: Any]

/// A WebSocket test client speaking the broadcaster protocol. One thread at a time.
final class BCClient: @unchecked Sendable {
    let socket: TestClient
    private var nextId = 1

    init(_ socket: TestClient) { self.socket = socket }

    func sendRaw(_ text: String) throws { try socket.sendText(text) }

    /// Sends `{"id":N,"method":M,"params":P}` and returns N.
    @discardableResult
    func call(_ method: String, _ params: String? = nil) throws -> Int {
        let id = nextId
        nextId += 1
        try sendRaw(#"{"id":\#(id),"method":"\#(method)""# + (params.map { #","params":\#($0)"# } ?? "") + "}")
        return id
    }

    /// The next text frame (pings skipped).
    func readText(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        while true {
            let f = try socket.readFrame()
            if f.opcode == 9 || f.opcode == 10 { continue }
            #expect(f.opcode == 1, "expected a text frame, got \(f) \(f.closeCode.map(String.init) ?? "")", sourceLocation: sourceLocation)
            return f.text
        }
    }

    func read(sourceLocation: SourceLocation = #_sourceLocation) throws -> JSON {
        let text = try readText(sourceLocation: sourceLocation)
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? JSON else {
            Issue.record("not a JSON object: \(text)", sourceLocation: sourceLocation)
            return [:]
        }
        return o
    }

    /// Reads a reply and checks it is exactly `{"requestId":id,"result":RESULT}` when `result`
    /// is given (byte for byte), or a result at all; returns the result object.
    @discardableResult
    func expectResult(_ id: Int, _ result: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSON {
        let text = try readText(sourceLocation: sourceLocation)
        if let result {
            #expect(text == #"{"requestId":\#(id),"result":\#(result)}"#, sourceLocation: sourceLocation)
        }
        let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? JSON ?? [:]
        #expect(o["requestId"] as? Int == id && o["error"] == nil, "\(text)", sourceLocation: sourceLocation)
        return o["result"] as? JSON ?? [:]
    }

    /// Reads an error reply and checks its code (and message when given).
    func expectError(_ id: Int, _ code: String, _ message: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let text = try readText(sourceLocation: sourceLocation)
        if let message {
            let idPart = id == 0 ? "" : #""requestId":\#(id),"#
            #expect(text == #"{\#(idPart)"error":{"code":"\#(code)","message":"\#(message)"}}"#, sourceLocation: sourceLocation)
        } else {
            let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? JSON ?? [:]
            #expect((o["error"] as? JSON)?["code"] as? String == code, "\(text)", sourceLocation: sourceLocation)
        }
    }

    /// Reads a broadcast notification and returns its params.
    func expectBroadcast(sourceLocation: SourceLocation = #_sourceLocation) throws -> JSON {
        let o = try read(sourceLocation: sourceLocation)
        #expect(o["method"] as? String == "broadcast" && o["id"] == nil && Set(o.keys) == ["method", "params"], "\(o)",
                sourceLocation: sourceLocation)
        return o["params"] as? JSON ?? [:]
    }

    /// Reads until a close frame; returns its code (nil when empty).
    func expectClose(sourceLocation: SourceLocation = #_sourceLocation) throws -> UInt16? {
        while true {
            let f = try socket.readFrame()
            if f.opcode == 8 { return f.closeCode }
            if f.opcode == 9 || f.opcode == 10 { continue }
            Issue.record("expected a close, got \(f.text)", sourceLocation: sourceLocation)
        }
    }

    /// True when nothing arrives within `milliseconds`.
    func receivesNothing(milliseconds: Int = 200) -> Bool {
        socket.setReceiveTimeout(milliseconds: milliseconds)
        defer { socket.setReceiveTimeout(milliseconds: 5000) }
        do {
            let f = try socket.readFrame()
            Issue.record("unexpected frame: \(f.text)")
            return false
        } catch {
            return true
        }
    }
}
