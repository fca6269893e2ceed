import Testing
import SwitchboardProtocols
#if canImport(Foundation)
import Foundation // tests only: reads BAD_REQUESTS.md to keep it in sync with the table
#endif

private func decode(_ text: String) -> BroadcasterInbound {
    var t = text
    return t.withUTF8 { BroadcasterRequestDecoder.decode($0, maxJSONDepth: 16) }
}

/// One inbound message the decoder does not turn into a call.
struct BadRequest: CustomTestStringConvertible, Sendable {
    var name: String
    var text: String
    var expected: BroadcasterInbound
    var testDescription: String { name }
}

private func row(_ name: String, _ text: String, _ expected: BroadcasterInbound) -> BadRequest {
    BadRequest(name: name, text: text, expected: expected)
}
private func refused(_ id: Int, _ code: BroadcasterErrorCode, _ message: String) -> BroadcasterInbound {
    .refused(id: id, BroadcasterError(code, message))
}

/// Every envelope and params rule, violated once. Mirrored in docs-pending/broadcaster.md
/// (section "Bad requests"), checked by `docsMirrorTable`.
let badRequests: [BadRequest] = [
    row("not JSON", "invalid-json", .malformed("invalid JSON")),
    row("empty message", "", .malformed("invalid JSON")),
    row("trailing comma", #"{"id":1,"method":"heartbeat",}"#, .malformed("invalid JSON")),
    row("JSON array", #"[{"id":1}]"#, .malformed("request is not a JSON object")),
    row("JSON string", #""heartbeat""#, .malformed("request is not a JSON object")),
    row("nested deeper than 16", #"{"id":1,"method":"heartbeat","x":"# + String(repeating: "[", count: 16) + String(repeating: "]", count: 16) + "}", .malformed("JSON nested too deeply")),
    row("id is a string", #"{"id":"1","method":"heartbeat"}"#, .malformed("invalid id")),
    row("id is a fraction", #"{"id":1.5,"method":"heartbeat"}"#, .malformed("invalid id")),
    row("id beyond 2^53", #"{"id":9007199254740993,"method":"heartbeat"}"#, .malformed("invalid id")),
    row("method is a number", #"{"id":1,"method":7}"#, .malformed("invalid method")),
    row("unknown method", #"{"id":1,"method":"shutdown"}"#, refused(1, .notFound, "method not found: shutdown")),
    row("method missing", #"{"id":2}"#, refused(2, .notFound, "method not found: ")),
    row("method in other case", #"{"id":3,"method":"Subscribe","params":{"channel":"a"}}"#, refused(3, .notFound, "method not found: Subscribe")),
    row("unknown method, notification", #"{"method":"nope"}"#, refused(0, .notFound, "method not found: nope")),
    row("params missing", #"{"id":4,"method":"subscribe"}"#, refused(4, .invalidArgument, "missing params")),
    row("params null", #"{"id":5,"method":"auth","params":null}"#, refused(5, .invalidArgument, "missing params")),
    row("params an array", #"{"id":6,"method":"subscribe","params":["a"]}"#, refused(6, .invalidArgument, "invalid params: expected an object")),
    row("params a string", #"{"id":7,"method":"unsubscribe","params":"a"}"#, refused(7, .invalidArgument, "invalid params: expected an object")),
    row("channel a number", #"{"id":8,"method":"subscribe","params":{"channel":1}}"#, refused(8, .invalidArgument, "invalid params: channel must be a string")),
    row("token an object", #"{"id":9,"method":"auth","params":{"token":{}}}"#, refused(9, .invalidArgument, "invalid params: token must be a string")),
    row("event a number", #"{"id":10,"method":"publish","params":{"channel":"a","event":1}}"#, refused(10, .invalidArgument, "invalid params: event must be a string")),
    row("since without epoch", #"{"id":11,"method":"subscribe","params":{"channel":"a","since":{"offset":1}}}"#,
        refused(11, .invalidArgument, #"invalid params: since must be {"offset": integer >= 0, "epoch": string}"#)),
    row("since offset negative", #"{"id":12,"method":"subscribe","params":{"channel":"a","since":{"offset":-1,"epoch":"e"}}}"#,
        refused(12, .invalidArgument, #"invalid params: since must be {"offset": integer >= 0, "epoch": string}"#)),
    row("since a number", #"{"id":13,"method":"subscribe","params":{"channel":"a","since":5}}"#,
        refused(13, .invalidArgument, #"invalid params: since must be {"offset": integer >= 0, "epoch": string}"#)),
]

@Suite("Broadcaster: request decoder")
struct RequestDecoderTests {
    @Test(arguments: badRequests)
    func badRequest(_ bad: BadRequest) {
        #expect(decode(bad.text) == bad.expected)
    }

    @Test func goodRequests() {
        #expect(decode(#"{"id":1,"method":"auth","params":{"token":"t.o.k"}}"#) == .call(id: 1, .auth(token: "t.o.k")))
        #expect(decode(#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#) == .call(id: 2, .subscribe(channel: "news", since: nil)))
        #expect(decode(#"{"id":3,"method":"subscribe","params":{"channel":"news","since":{"offset":7,"epoch":"ab"}}}"#)
                == .call(id: 3, .subscribe(channel: "news", since: BroadcasterRecoveryPosition(offset: 7, epoch: "ab"))))
        #expect(decode(#"{"id":4,"method":"unsubscribe","params":{"channel":"x"}}"#) == .call(id: 4, .unsubscribe(channel: "x")))
        #expect(decode(#"{"method":"heartbeat"}"#) == .call(id: 0, .heartbeat))
        #expect(decode(#"{"id":null,"method":"heartbeat","params":[1]}"#) == .call(id: 0, .heartbeat))
        #expect(decode(#"{"id":-5,"method":"heartbeat","extra":{"ignored":true}}"#) == .call(id: -5, .heartbeat))
        // Payload kept as the exact bytes; absent → null; missing strings → "" (Go zero values).
        #expect(decode(#"{"id":6,"method":"publish","params":{"channel":"c","event":"e","payload": {"k" : [1, 2.50]}}}"#)
                == .call(id: 6, .publish(BroadcasterPublish(channel: "c", event: "e", payload: Array(#"{"k" : [1, 2.50]}"#.utf8)))))
        #expect(decode(#"{"id":7,"method":"publish","params":{}}"#) == .call(id: 7, .publish(BroadcasterPublish(channel: "", event: "", payload: Array("null".utf8)))))
        #expect(decode(#"{"id":8,"method":"subscribe","params":{"channel":null}}"#) == .call(id: 8, .subscribe(channel: "", since: nil)))
    }

    @Test func restBodies() {
        func body(_ text: String) -> (batch: Bool, items: [Result<BroadcasterPublish, BroadcasterError>])? {
            var t = text
            return t.withUTF8 { BroadcasterRequestDecoder.decodePublishBody($0, maxJSONDepth: 16) }
        }
        let single = body(#"{"channel":"a","event":"e","payload":1}"#)
        #expect(single?.batch == false)
        #expect((try? single?.items.first?.get()) == BroadcasterPublish(channel: "a", event: "e", payload: Array("1".utf8)))
        let batch = body(#"[{"channel":"a","payload":"x"},5,{"channel":2}]"#)
        #expect(batch?.batch == true)
        #expect(batch?.items.count == 3)
        #expect((try? batch?.items[0].get()) == BroadcasterPublish(channel: "a", event: "", payload: Array(#""x""#.utf8)))
        #expect(throws: BroadcasterError.self) { try batch?.items[1].get() }
        #expect(throws: BroadcasterError.self) { try batch?.items[2].get() }
        #expect(body("nope") == nil)
        #expect(body("7") == nil)
        #expect(body("") == nil)
    }

    @Test func encoders() {
        #expect(BroadcasterResponse.result(requestId: 1) { $0.bool("success", true) } == #"{"requestId":1,"result":{"success":true}}"#)
        #expect(BroadcasterResponse.error(requestId: 0, BroadcasterError(.notFound, "method not found: x"))
                == #"{"error":{"code":"NotFound","message":"method not found: x"}}"#)
        #expect(BroadcasterResponse.error(requestId: 9, BroadcasterError(.permissionDenied, "no \"q\""))
                == #"{"requestId":9,"error":{"code":"PermissionDenied","message":"no \"q\""}}"#)
        #expect(BroadcasterErrorCode.allCases.map(\.rawValue) == ["InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
                                                                   "PermissionDenied", "Unauthenticated", "Internal"])
        let m = BroadcasterMessage(id: "abc", channel: "c:1", event: "ev", payload: Array(#"{"a":1}"#.utf8),
                                   createTimeNanoseconds: 1_700_000_000_120_000_000, offset: 3, epoch: "E")
        #expect(BroadcastFrame(m).text(seq: 12)
                == #"{"method":"broadcast","params":{"id":"abc","seq":12,"createTime":"2023-11-14T22:13:20.12Z","channel":"c:1","event":"ev","payload":{"a":1},"offset":3,"epoch":"E"}}"#)
        #expect(String(decoding: BroadcasterResponse.restMessage(m), as: UTF8.self)
                == #"{"id":"abc","seq":0,"createTime":"2023-11-14T22:13:20.12Z","channel":"c:1","event":"ev","payload":{"a":1},"offset":3,"epoch":"E"}"#)
        let id = BroadcasterMessage.randomID()
        #expect(id.utf8.count == 21 && BroadcasterChannelPattern.matches(id.replacingAll("-", "_")))
    }

    @Test func timestamps() {
        #expect(BroadcasterTimestamp.format(unixNanoseconds: 0) == "1970-01-01T00:00:00Z")
        #expect(BroadcasterTimestamp.format(unixNanoseconds: 951_782_400_000_000_001) == "2000-02-29T00:00:00.000000001Z")
        #expect(BroadcasterTimestamp.format(unixNanoseconds: 4_102_444_799_999_999_999) == "2099-12-31T23:59:59.999999999Z")
        #expect(BroadcasterTimestamp.format(unixNanoseconds: -1) == "1969-12-31T23:59:59.999999999Z")
        #expect(BroadcasterTimestamp.format(unixNanoseconds: 1_709_210_096_500_000_000) == "2024-02-29T12:34:56.5Z")
    }

    /// docs-pending/broadcaster.md lists exactly the table above.
    @Test func docsMirrorTable() throws {
        #if canImport(Foundation)
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs-pending/broadcaster.md")
        var doc = try String(contentsOf: url, encoding: .utf8)
        let rendered = renderBadRequestsMarkdown()
        if ProcessInfo.processInfo.environment["REGENERATE_BAD_REQUESTS"] == "1",
           let begin = doc.range(of: "<!-- bad-requests:begin -->\n"), let end = doc.range(of: "<!-- bad-requests:end -->") {
            doc.replaceSubrange(begin.upperBound..<end.lowerBound, with: rendered)
            try doc.write(to: url, atomically: true, encoding: .utf8)
        }
        #expect(doc.contains("<!-- bad-requests:begin -->\n" + rendered + "<!-- bad-requests:end -->"),
                "run with REGENERATE_BAD_REQUESTS=1 to rewrite the table in docs-pending/broadcaster.md")
        #endif
    }
}

func renderBadRequestsMarkdown() -> String {
    var out = "| Rule | Message | Outcome |\n|---|---|---|\n"
    for bad in badRequests {
        let shown = bad.text.count > 70 ? String(bad.text.prefix(60)) + "…" : bad.text
        let outcome: String
        switch bad.expected {
        case .malformed(let why): outcome = "connection closed (\(why))"
        case .refused(let id, let e): outcome = "`\(e.code.rawValue)` \"\(e.message.replacingAll("|", "\\|"))\"" + (id == 0 ? " (no requestId)" : "")
        case .call: outcome = "call"
        }
        let cell = shown.isEmpty ? "(empty)" : "`\(shown.replacingAll("|", "\\|"))`"
        out += "| \(bad.name) | \(cell) | \(outcome) |\n"
    }
    return out
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
