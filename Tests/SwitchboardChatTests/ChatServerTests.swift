import Logging
import Switchboard
import SwitchboardTestSupport
import Testing
@testable import switchboard_chat

/// The chat's WebSocket protocol over real sockets, on two shards (rooms live on their
/// channel's owner shard; clients land on either).
@Suite("Browser chat: the WebSocket protocol", .serialized)
struct ChatServerTests {
    func startChat(historyMessages: Int, adjust: (inout ChatLimits) -> Void = { _ in }) throws -> Broker {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 2
        configuration.webSocket.paths = ["/ws"]
        var limits = ChatLimits()
        limits.historyMessages = historyMessages
        adjust(&limits)
        let broker = ChatHandler.broker(configuration: configuration, limits: limits, logger: .discarding)
        try broker.start()
        return broker
    }

    func client(_ broker: Broker) throws -> TestClient {
        let c = try TestClient(port: broker.port)
        #expect(try c.upgrade(path: "/ws").status == 101)
        return c
    }

    /// Reads frames until one starts with `prefix` and contains `containing` (presence
    /// messages come and go in between). A frame that never comes fails on the read timeout.
    func next(_ c: TestClient, _ prefix: String, containing: String = "") throws -> String {
        while true {
            let text = try c.readFrame().text
            if text.hasPrefix(prefix) && (containing.isEmpty || text.contains(containing)) { return text }
        }
    }

    @Test func joinSayAndRecoverWhatWasMissedInOrder() throws {
        let broker = try startChat(historyMessages: 3)
        defer { broker.shutdown(graceMilliseconds: 0) }
        let ada = try client(broker), grace = try client(broker)
        try ada.sendText("join\nlobby\nAda\n")
        #expect(try next(ada, #"{"type":"history""#)
            == #"{"type":"history","room":"lobby","reset":false,"latest":0,"version":1,"members":["Ada"],"messages":[]}"#)
        try grace.sendText("join\nlobby\nGrace\n")
        _ = try next(grace, #"{"type":"history""#)
        #expect(try next(ada, #"{"type":"presence""#, containing: "Grace")
            == #"{"type":"presence","room":"lobby","version":2,"members":["Ada","Grace"]}"#)

        try grace.sendText("say\n<b>hi</b>\n")
        let first = try next(ada, #"{"type":"message""#)
        #expect(first.hasPrefix(#"{"type":"message","room":"lobby","offset":1,"name":"Grace","text":"\u003cb\u003ehi\u003c/b\u003e","time":"#))
        #expect(try next(grace, #"{"type":"message""#) == first, "the sender gets its own message, same bytes")

        // Grace leaves; Ada says two more; Grace comes back after offset 1 and gets 2 and 3.
        try grace.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        #expect(try next(ada, #"{"type":"presence""#, containing: #""version":3,"#).contains(#""members":["Ada"]"#))
        try ada.sendText("say\ntwo")
        try ada.sendText("say\nthree")
        #expect(try next(ada, #"{"type":"message""#).contains(#""offset":2"#))
        #expect(try next(ada, #"{"type":"message""#).contains(#""offset":3"#))
        let back = try client(broker)
        try back.sendText("join\nlobby\nGrace\n1")
        let recovered = try next(back, #"{"type":"history""#)
        #expect(recovered.contains(#""reset":false,"latest":3,"#))
        #expect(recovered.contains(#""offset":2,"name":"Ada","text":"two""#))
        #expect(recovered.contains(#""offset":3,"name":"Ada","text":"three""#))
        #expect(!recovered.contains(#""offset":1,"#), "only what was missed")

        // History holds 3: after offset 0 is no longer covered (1 is still held: covered).
        try ada.sendText("say\nfour")
        #expect(try next(ada, #"{"type":"message""#).contains(#""offset":4"#))
        let late = try client(broker)
        try late.sendText("join\nlobby\nLate\n0")
        let reload = try next(late, #"{"type":"history""#)
        #expect(reload.contains(#""reset":true,"latest":4,"#), "\(reload)")
        #expect(reload.contains(#""offset":2,"#) && reload.contains(#""offset":4,"#) && !reload.contains(#""offset":1,"#))
        // An offset the room never gave (a restarted server) is a reload too.
        let future = try client(broker)
        try future.sendText("join\nlobby\nFuture\n99")
        #expect(try next(future, #"{"type":"history""#).contains(#""reset":true"#))
    }

    @Test func badCommandsAreAnsweredWithErrors() throws {
        let broker = try startChat(historyMessages: 3)
        defer { broker.shutdown(graceMilliseconds: 0) }
        let c = try client(broker)
        try c.sendText("say\nbefore joining")
        #expect(try next(c, #"{"type":"error""#) == #"{"type":"error","text":"join a room first"}"#)
        try c.sendText("join\n\nNobody\n")
        #expect(try next(c, #"{"type":"error""#).contains("join needs a room"))
        try c.sendText("join\nlobby\nAda\nabc")
        #expect(try next(c, #"{"type":"error""#).contains("SINCE must be an offset"))
        try c.sendText("dance")
        #expect(try next(c, #"{"type":"error""#) == #"{"type":"error","text":"unknown command"}"#)
        try c.sendText("join\nlobby\nAda\n")
        _ = try next(c, #"{"type":"history""#)
        try c.sendText("say\n" + String(repeating: "x", count: 2001))
        #expect(try next(c, #"{"type":"error""#).contains("limited to 2000 characters"))
    }

    /// A string member of the server's flat JSON (no escapes in the values these tests use).
    func stringField(_ json: String, _ key: String) -> String {
        guard let start = json.range(of: "\"\(key)\":\"") else { return "" }
        return String(json[start.upperBound...].prefix { $0 != "\"" })
    }

    @Test func floodControlRefusesPastTheBurstAndCountsIt() throws {
        // A burst of 3, then one a second: the 4th message in a row is refused.
        let broker = try startChat(historyMessages: 10) { $0.messageBurst = 3; $0.maxMessagesPerSecond = 1 }
        defer { broker.shutdown(graceMilliseconds: 0) }
        let c = try client(broker)
        try c.sendText("join\nlobby\nFlood\n")
        _ = try next(c, #"{"type":"history""#)
        for i in 1...4 { try c.sendText("say\nm\(i)") }
        // The refusal comes from the socket's shard, the messages through the room's: any order.
        var frames: [String] = []
        while frames.count < 4 {
            let text = try c.readFrame().text
            if !text.hasPrefix(#"{"type":"presence""#) { frames.append(text) }
        }
        #expect(frames.filter { $0 == #"{"type":"error","text":"slow down: at most 1 messages a second"}"# }.count == 1)
        let texts = frames.filter { $0.hasPrefix(#"{"type":"message""#) }.map { stringField($0, "text") }
        #expect(texts == ["m1", "m2", "m3"], "m4 was refused: \(frames)")
        #expect(broker.metricsText().contains("switchboard_chat_rate_limited_total 1\n"))
    }

    @Test func thePageIsServedFromTheBinary() throws {
        let broker = try startChat(historyMessages: 3)
        defer { broker.shutdown(graceMilliseconds: 0) }
        let http = try TestClient(port: broker.port)
        for (path, type) in [("/", "text/html; charset=utf-8"), ("/chat.js", "text/javascript; charset=utf-8"),
                             ("/chat.css", "text/css; charset=utf-8")] {
            try http.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try http.readResponse()
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == type)
            #expect(response.header("Content-Security-Policy")?.contains("script-src 'self'") == true)
            #expect(response.body.count > 500)
        }
        try http.send("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try http.readResponse().status == 404)
    }
}
