import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// One hostile input and the reply it must get.
struct HostileCase: CustomStringConvertible, Sendable {
    let name: String
    let input: String
    /// Whether the sender is registered when it sends the input.
    let registered: Bool
    let replyType: String
    let replyTo: Int?
    let error: String
    var description: String { name }
}

private let deep100k = String(repeating: "[", count: 100_000)
private let huge = String(repeating: "x", count: 1 << 20)

let hostileCases: [HostileCase] = [
    .init(name: "empty text", input: "", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "whitespace only", input: " \n\t ", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "open brace", input: "{", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "plain words", input: "register me please", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "trailing comma", input: #"{"type":"register","role":"a",}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "single quotes", input: "{'type':'register'}", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "unquoted key", input: #"{type:"register"}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "leading zero", input: #"{"type":"register","id":01,"role":"a"}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "NaN", input: #"{"type":"register","id":NaN}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "plus sign", input: #"{"type":"register","id":+1}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "bare fraction", input: #"{"id":.5}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "comment", input: #"{"type":"register" /* hi */}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "trailing garbage", input: #"{"type":"register","role":"a"} x"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "two objects", input: #"{}{}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "raw control character in string", input: "{\"type\":\"reg\u{01}ister\"}", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "raw newline in string", input: "{\"type\":\"a\nb\"}", registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "unknown escape", input: #"{"type":"\x41"}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "short unicode escape", input: #"{"type":"\u41"}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "lone high surrogate", input: #"{"type":"message","payload":"\ud800"}"#, registered: true, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "lone low surrogate", input: #"{"type":"message","payload":"\udc00x"}"#, registered: true, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "unterminated string", input: #"{"type":"register"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "bad literal", input: #"{"type":"register","x":tru}"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "unbalanced payload", input: #"{"type":"message","id":3,"channelId":"c","payload":[1,2}"#, registered: true, replyType: "error", replyTo: nil, error: "Invalid JSON"),
    .init(name: "array top level", input: #"[{"type":"register"}]"#, registered: false, replyType: "error", replyTo: nil, error: "Invalid message: expected a JSON object"),
    .init(name: "string top level", input: #""register""#, registered: false, replyType: "error", replyTo: nil, error: "Invalid message: expected a JSON object"),
    .init(name: "null top level", input: "null", registered: false, replyType: "error", replyTo: nil, error: "Invalid message: expected a JSON object"),
    .init(name: "number top level", input: "12", registered: false, replyType: "error", replyTo: nil, error: "Invalid message: expected a JSON object"),
    .init(name: "deep nesting in payload", input: #"{"type":"message","id":1,"channelId":"c","payload":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}", registered: true, replyType: "error", replyTo: nil, error: "JSON nesting too deep"),
    .init(name: "100,000 unclosed brackets", input: deep100k, registered: false, replyType: "error", replyTo: nil, error: "JSON nesting too deep"),
    .init(name: "deep objects", input: String(repeating: #"{"a":"#, count: 1000) + "1" + String(repeating: "}", count: 1000), registered: false, replyType: "error", replyTo: nil, error: "JSON nesting too deep"),
    .init(name: "empty object", input: "{}", registered: false, replyType: "error", replyTo: nil, error: "Missing or invalid field: type"),
    .init(name: "numeric type", input: #"{"type":5,"id":3}"#, registered: false, replyType: "error", replyTo: 3, error: "Missing or invalid field: type"),
    .init(name: "null type", input: #"{"type":null,"id":4}"#, registered: false, replyType: "error", replyTo: 4, error: "Missing or invalid field: type"),
    .init(name: "unknown type", input: #"{"type":"bogus","id":5}"#, registered: false, replyType: "error", replyTo: 5, error: "Unknown message type: bogus"),
    .init(name: "unknown type, registered", input: #"{"type":"channel_message","id":6}"#, registered: true, replyType: "error", replyTo: 6, error: "Unknown message type: channel_message"),
    .init(name: "type with escapes", input: #"{"type":"b\u00f6\"gus\n","id":7}"#, registered: false, replyType: "error", replyTo: 7, error: "Unknown message type: bö\"gus\n"),
    .init(name: "huge type is cut in the reply", input: "{\"type\":\"\(huge)\",\"id\":8}", registered: false, replyType: "error", replyTo: 8, error: "Unknown message type: " + String(repeating: "x", count: 128) + "…"),
    .init(name: "escaped key names count", input: #"{"typ\u0065":"list_by_role","id":9,"role":"r"}"#, registered: false, replyType: "list_by_role_failed", replyTo: 9, error: "Not registered"),
    .init(name: "string id", input: #"{"type":"register","id":"7","role":"a"}"#, registered: false, replyType: "register_failed", replyTo: nil, error: "Invalid field: id (expected an integer)"),
    .init(name: "fractional id", input: #"{"type":"open","id":1.5,"targetId":"x"}"#, registered: true, replyType: "channel_open_failed", replyTo: nil, error: "Invalid field: id (expected an integer)"),
    .init(name: "huge id", input: #"{"type":"close","id":123456789012345678901234567890,"channelId":"c"}"#, registered: true, replyType: "channel_close_failed", replyTo: nil, error: "Invalid field: id (expected an integer)"),
    .init(name: "numeric role", input: #"{"type":"register","id":10,"role":1}"#, registered: false, replyType: "register_failed", replyTo: 10, error: "Missing or invalid field: role"),
    .init(name: "object role", input: #"{"type":"register","id":11,"role":{"a":"b"}}"#, registered: false, replyType: "register_failed", replyTo: 11, error: "Missing or invalid field: role"),
    .init(name: "huge role", input: "{\"type\":\"register\",\"id\":12,\"role\":\"\(huge)\"}", registered: false, replyType: "register_failed", replyTo: 12, error: "Role too long"),
    .init(name: "huge role in list", input: "{\"type\":\"list_by_role\",\"id\":13,\"role\":\"\(huge)\"}", registered: true, replyType: "list_by_role_failed", replyTo: 13, error: "Role too long"),
    .init(name: "array targetId", input: #"{"type":"open","id":14,"targetId":["a"]}"#, registered: true, replyType: "channel_open_failed", replyTo: 14, error: "Missing or invalid field: targetId"),
    .init(name: "huge targetId", input: "{\"type\":\"open\",\"id\":15,\"targetId\":\"\(huge)\"}", registered: true, replyType: "channel_open_failed", replyTo: 15, error: "Target connection not found"),
    .init(name: "bool channelId", input: #"{"type":"message","id":16,"channelId":true,"payload":1}"#, registered: true, replyType: "channel_message_failed", replyTo: 16, error: "Missing or invalid field: channelId"),
    .init(name: "message without payload", input: #"{"type":"message","id":17,"channelId":"00000000-0000-4000-8000-000000000000"}"#, registered: true, replyType: "channel_message_failed", replyTo: 17, error: "Missing field: payload"),
    .init(name: "message too large", input: "{\"type\":\"message\",\"id\":18,\"payload\":\"\(String(repeating: "y", count: 3 << 20))\"}", registered: true, replyType: "error", replyTo: nil, error: "Message too large"),
]

@Suite("Connection broker: hostile input", .serialized)
struct ConnectionBrokerHostileTests {
    @Test("every hostile input gets its error reply; the connection stays usable; a bystander is unaffected")
    func hostileTable() throws {
        var o = ConnectionBrokerOptions.strictProfile()
        o.maxMessageBytes = 2 << 20
        o.maxJSONDepth = 64
        let server = try CBServer(options: o)
        defer { server.stop() }
        // Bystanders with an open channel.
        let a = try server.registered("bystander"), b = try server.registered("bystander")
        let channel = try a.open(to: b)
        let fresh = try server.client()          // stays unregistered
        let member = try server.registered("h")  // registered
        for c in hostileCases {
            let who = c.registered ? member : fresh
            try who.sendRaw(c.input)
            let m = try who.read()
            var fields: [String: String?] = ["error": c.error]
            if let t = m["targetId"] { fields["targetId"] = t as? String }
            if let t = m["channelId"] { fields["channelId"] = t as? String }
            who.check(m, c.replyType, replyTo: c.replyTo, fields)
            #expect(m["error"] as? String == c.error, "\(c.name): \(m["error"] ?? "nil")")
        }
        // Binary frames.
        try fresh.socket.sendFrame(opcode: 2, payload: Array(#"{"type":"register","id":1,"role":"b"}"#.utf8))
        try fresh.expectFailure("error", replyTo: nil, "Binary messages are not supported")
        // Both hostile clients still work.
        try fresh.register("h")
        #expect(try member.list("h") == [member.connectionId!, fresh.connectionId!])
        // The bystanders saw nothing and still talk.
        #expect(a.receivesNothing(milliseconds: 50) && b.receivesNothing(milliseconds: 50))
        let id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":{\"ok\":true}")
        #expect(try b.readText().hasSuffix(",\"channelId\":\"\(channel)\",\"payload\":{\"ok\":true}}"))
        try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        let metrics = server.cb.metrics
        #expect(metrics.invalidJSON.load(ordering: .relaxed) == hostileCases.filter { $0.error == "Invalid JSON" }.count)
        #expect(metrics.jsonTooDeep.load(ordering: .relaxed) == 3)
        #expect(metrics.messageTooLarge.load(ordering: .relaxed) == 1)
        #expect(metrics.binaryRejected.load(ordering: .relaxed) == 1)
    }

    @Test("a message over the WebSocket limit closes that connection with 1009, not the others")
    func webSocketLimit() throws {
        let server = try CBServer(configure: { $0.webSocket.maxMessageBytes = 4096 })
        defer { server.stop() }
        let bystander = try server.registered("z")
        let x = try server.registered("z")
        try x.sendRaw("{\"type\":\"list_by_role\",\"id\":1,\"role\":\"\(String(repeating: "q", count: 5000))\"}")
        var code: UInt16? = nil
        while let f = try? x.socket.readFrame() {
            if f.opcode == 8 { code = f.closeCode; break }
        }
        #expect(code == 1009)
        #expect(waitUntil { server.cb.counts.connections == 1 })
        #expect(try bystander.list("z") == [bystander.connectionId!])
    }
}

/// What the `reference` profile answers to a hostile input (the table above holds the
/// `strict` profile's replies).
enum ReferenceOutcome: Sendable {
    /// Close 1003 with this reason.
    case close(String)
    /// `{"type":"error","error":T[,"replyTo":R],"id":N}`; `replyToJSON` as it must appear.
    case error(replyToJSON: String?, String)
    /// A success reply of this type with this `replyTo` JSON text.
    case reply(String, replyToJSON: String)
}

/// The reference profile's answer to each row of `hostileCases` (by name; every row has one).
/// Deviations from the reference are marked: its `JSON.parse` accepts lone surrogates, and it
/// has none of Switchboard's limits (depth, size, role length), which answer as errors first.
func referenceOutcome(_ c: HostileCase) -> ReferenceOutcome {
    let table: [String: ReferenceOutcome] = [
        "array top level": .close("Unknown request type: undefined"),
        "string top level": .close("Unknown request type: undefined"),
        "null top level": .close("Invalid message format"),
        "number top level": .close("Unknown request type: undefined"),
        "deep nesting in payload": .error(replyToJSON: nil, "JSON nesting too deep"),
        "100,000 unclosed brackets": .error(replyToJSON: nil, "JSON nesting too deep"),
        "deep objects": .error(replyToJSON: nil, "JSON nesting too deep"),
        "empty object": .close("Unknown request type: undefined"),
        "numeric type": .close("Unknown request type: 5"),
        "null type": .close("Unknown request type: null"),
        "unknown type": .close("Unknown request type: bogus"),
        "unknown type, registered": .close("Unknown request type: channel_message"),
        "type with escapes": .close("Unknown request type: bö\"gus\n"),
        "huge type is cut in the reply": .close("Invalid message format"),
        "escaped key names count": .reply("connections", replyToJSON: "9"),
        "string id": .reply("registered", replyToJSON: "\"7\""),
        "fractional id": .error(replyToJSON: "1.5", "Target connection not found"),
        "huge id": .error(replyToJSON: "123456789012345678901234567890", "Channel not found"),
        "numeric role": .error(replyToJSON: "10", "Missing or invalid field: role"),
        "object role": .error(replyToJSON: "11", "Missing or invalid field: role"),
        "huge role": .error(replyToJSON: "12", "Role too long"),
        "huge role in list": .error(replyToJSON: "13", "Role too long"),
        "array targetId": .error(replyToJSON: "14", "Target connection not found"),
        "huge targetId": .error(replyToJSON: "15", "Target connection not found"),
        "bool channelId": .error(replyToJSON: "16", "Channel not found"),
        "message without payload": .error(replyToJSON: "17", "Channel not found"),
        "message too large": .error(replyToJSON: nil, "Message too large"),
    ]
    if let outcome = table[c.name] { return outcome }
    precondition(c.error == "Invalid JSON", "no reference outcome for \(c.name)")
    return .close("Invalid message format")
}

@Suite("Connection broker: hostile input, reference profile", .serialized)
struct ConnectionBrokerHostileReferenceTests {
    @Test("every hostile input gets the reference's answer (1003 or type error); a bystander is unaffected")
    func hostileTable() throws {
        var o = ConnectionBrokerOptions()
        #expect(o.profile == .reference)
        o.maxMessageBytes = 2 << 20
        o.maxJSONDepth = 64
        let server = try CBServer(options: o)
        defer { server.stop() }
        let a = try server.registered("bystander"), b = try server.registered("bystander")
        let channel = try a.open(to: b)
        var closes = 0
        for c in hostileCases {
            // A fresh client per row: a 1003 ends it, a success changes its state.
            let who = c.registered ? try server.registered("h") : try server.client()
            try who.sendRaw(c.input)
            switch referenceOutcome(c) {
            case .close(let reason):
                closes += 1
                let close = closeFrame(who)
                #expect(close?.code == 1003 && close?.reason == reason, "\(c.name): \(String(describing: close))")
            case .error(let replyTo, let error):
                try expectReferenceError(who, replyToJSON: replyTo, error)
            case .reply(let type, let replyTo):
                let text = try who.readText()
                #expect(text.hasPrefix("{\"type\":\"\(type)\",\"id\":") && text.contains(",\"replyTo\":\(replyTo),"), "\(c.name): \(text)")
            }
        }
        // A binary frame is read as text.
        let binary = try server.client()
        try binary.socket.sendFrame(opcode: 2, payload: Array(#"{"type":"register","id":1,"role":"b"}"#.utf8))
        try binary.expect("registered", replyTo: 1, ["connectionId": nil])
        // The bystanders saw nothing and still talk.
        #expect(a.receivesNothing(milliseconds: 50) && b.receivesNothing(milliseconds: 50))
        let id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":{\"ok\":true}")
        #expect(try b.readText().hasSuffix(",\"channelId\":\"\(channel)\",\"payload\":{\"ok\":true}}"))
        try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        let metrics = server.cb.metrics
        #expect(metrics.closedUnsupportedData.load(ordering: .relaxed) == closes)
        #expect(metrics.jsonTooDeep.load(ordering: .relaxed) == 3)
        #expect(metrics.binaryRejected.load(ordering: .relaxed) == 0)
    }
}
