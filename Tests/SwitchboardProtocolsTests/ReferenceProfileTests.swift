import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// An input that makes the `reference` profile close the socket with 1003, and the reason.
struct ReferenceCloseCase: CustomStringConvertible, Sendable {
    let name: String
    let input: String
    let reason: String
    var description: String { name }
}

/// The reference (yusitnikov/websocket-mcp `packages/connection-broker`) closes 1003 for what
/// `JSON.parse` refuses ("Invalid message format", also for `null`, whose `.type` throws) and
/// for a missing or unknown `type` ("Unknown request type: X", X as JavaScript prints it; a
/// reason over 123 bytes makes `ws.close` throw and its catch closes with "Invalid message
/// format").
let referenceCloseCases: [ReferenceCloseCase] = [
    .init(name: "empty text", input: "", reason: "Invalid message format"),
    .init(name: "open brace", input: "{", reason: "Invalid message format"),
    .init(name: "trailing comma", input: #"{"type":"register","role":"a",}"#, reason: "Invalid message format"),
    .init(name: "null top level", input: "null", reason: "Invalid message format"),
    .init(name: "array top level", input: #"[{"type":"register"}]"#, reason: "Unknown request type: undefined"),
    .init(name: "number top level", input: "12", reason: "Unknown request type: undefined"),
    .init(name: "empty object", input: "{}", reason: "Unknown request type: undefined"),
    .init(name: "numeric type", input: #"{"type":5,"id":3}"#, reason: "Unknown request type: 5"),
    .init(name: "null type", input: #"{"type":null,"id":4}"#, reason: "Unknown request type: null"),
    .init(name: "object type", input: #"{"type":{},"id":4}"#, reason: "Unknown request type: [object Object]"),
    .init(name: "unknown type", input: #"{"type":"bogus","id":5}"#, reason: "Unknown request type: bogus"),
    .init(name: "a notification's type", input: #"{"type":"channel_message","id":6}"#, reason: "Unknown request type: channel_message"),
    .init(name: "prototype name", input: #"{"type":"toString","id":6}"#, reason: "Unknown request type: toString"),
    .init(name: "huge type", input: "{\"type\":\"\(String(repeating: "x", count: 200))\"}", reason: "Invalid message format"),
]

/// `{"type":"error","error":T,"replyTo":R,"id":N}`, in that field order; `replyTo` absent
/// when `replyToJSON` is nil.
func expectReferenceError(_ c: CBClient, replyToJSON: String?, _ error: String,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
    let text = try c.readText()
    let prefix = "{\"type\":\"error\",\"error\":\(jsonString(error)),"
    let middle = replyToJSON.map { "\"replyTo\":\($0),\"id\":" } ?? "\"id\":"
    #expect(text.hasPrefix(prefix + middle), "\(text)", sourceLocation: sourceLocation)
    let id = Int(text.dropFirst(prefix.count + middle.count).dropLast())
    #expect(id != nil && text.hasSuffix("}"), "\(text)", sourceLocation: sourceLocation)
    if let id { #expect(c.server.record(id), "duplicate id \(id)", sourceLocation: sourceLocation) }
}

/// Reads until the close frame: its code and reason.
func closeFrame(_ c: CBClient) -> (code: UInt16?, reason: String)? {
    while let f = try? c.socket.readFrame() {
        if f.opcode == 8 { return (f.closeCode, String(decoding: f.payload.dropFirst(2), as: UTF8.self)) }
    }
    return nil
}

@Suite("Connection broker: reference profile (the default)", .serialized)
struct ConnectionBrokerReferenceProfileTests {
    @Test("bad JSON and a missing or unknown type close 1003 with the reference's reason", arguments: referenceCloseCases)
    func closes1003(_ c: ReferenceCloseCase) throws {
        let server = try CBServer(options: ConnectionBrokerOptions())
        defer { server.stop() }
        let x = try server.client()
        try x.sendRaw(c.input)
        let close = closeFrame(x)
        #expect(close?.code == 1003 && close?.reason == c.reason, "\(String(describing: close))")
        #expect(server.cb.metrics.closedUnsupportedData.load(ordering: .relaxed) == 1)
    }

    @Test("failures are type error with the reference's texts, in its check order; the connection stays usable")
    func errorReplies() throws {
        let server = try CBServer(shards: 2, options: ConnectionBrokerOptions())
        defer { server.stop() }
        let x = try server.client()  // never registers
        // list_by_role before register is allowed.
        var id = try x.request("list_by_role", "\"role\":\"none\"")
        let listed = try x.read()
        x.check(listed, "connections", replyTo: id, extraKeys: ["ids"])
        #expect(listed["ids"] as? [String] == [])
        // open: the target first, then registration.
        id = try x.request("open", "\"targetId\":\"00000000-0000-4000-8000-000000000000\"")
        try expectReferenceError(x, replyToJSON: String(id), "Target connection not found")
        id = try x.request("open")
        try expectReferenceError(x, replyToJSON: String(id), "Target connection not found")
        // Targets on both shards (ids are homed: the probe crosses shards for one of them).
        var members: [CBClient] = []
        while Set(members.compactMap { server.shard(of: $0) }).count < 2 { members.append(try server.registered("m")) }
        for m in members {
            id = try x.request("open", "\"targetId\":\"\(m.connectionId!)\"")
            try expectReferenceError(x, replyToJSON: String(id), "Connection not registered")
        }
        // A channel between a pair on different shards.
        let a = members.first { server.shard(of: $0) == 0 }!, b = members.first { server.shard(of: $0) == 1 }!
        let channel = try a.open(to: b)
        // message/close: the channel first, then registration, then membership.
        id = try x.request("message", "\"channelId\":\"\(channel)\",\"payload\":1")
        try expectReferenceError(x, replyToJSON: String(id), "Connection not registered")
        id = try x.request("close", "\"channelId\":\"\(UUID().uuidString.lowercased())\"")
        try expectReferenceError(x, replyToJSON: String(id), "Channel not found")
        id = try x.request("message", "\"channelId\":7")
        try expectReferenceError(x, replyToJSON: String(id), "Channel not found")
        // Non-parties on both shards (the channel's home is b's: one asks locally, one remotely).
        var outsiders: [CBClient] = []
        while Set(outsiders.compactMap { server.shard(of: $0) }).count < 2 { outsiders.append(try server.registered("o")) }
        for outsider in outsiders {
            id = try outsider.request("message", "\"channelId\":\"\(channel)\",\"payload\":1")
            try expectReferenceError(outsider, replyToJSON: String(id), "Not authorized for this channel")
            id = try outsider.request("close", "\"channelId\":\"\(channel)\"")
            try expectReferenceError(outsider, replyToJSON: String(id), "Not authorized for this channel")
        }
        // Any id is echoed as replyTo, whatever its kind.
        try x.sendRaw(#"{"type":"open","id":"abc","targetId":5}"#)
        try expectReferenceError(x, replyToJSON: #""abc""#, "Target connection not found")
        try x.sendRaw(#"{"type":"open","targetId":5}"#)
        try expectReferenceError(x, replyToJSON: nil, "Target connection not found")
        // A binary frame is read as text.
        try x.socket.sendFrame(opcode: 2, payload: Array(#"{"type":"register","id":40,"role":"bin"}"#.utf8))
        let registered = try x.expect("registered", replyTo: 40, ["connectionId": nil])
        #expect(try x.list("bin") == [registered["connectionId"] as! String])
        #expect(server.cb.metrics.notAuthorized.load(ordering: .relaxed) == 2 * outsiders.count)
        #expect(a.receivesNothing(milliseconds: 50) && b.receivesNothing(milliseconds: 50))
    }

    @Test("the peer's notification is queued before the requester's reply, across shards")
    func notificationBeforeReply() throws {
        let server = try CBServer(shards: 2, options: ConnectionBrokerOptions())
        defer { server.stop() }
        var members: [CBClient] = []
        while Set(members.compactMap { server.shard(of: $0) }).count < 2 { members.append(try server.registered("p")) }
        let a = members.first { server.shard(of: $0) == 0 }!, b = members.first { server.shard(of: $0) == 1 }!
        let channel = try a.open(to: b)
        for round in 0..<50 {
            let (from, to) = round % 2 == 0 ? (a, b) : (b, a)
            let id = try from.request("message", "\"channelId\":\"\(channel)\",\"payload\":\(round)")
            try from.expect("channel_message_sent", replyTo: id, ["channelId": channel])
            // The reply left after `to`'s shard queued the message: it is already on its way.
            to.socket.setReceiveTimeout(milliseconds: 1000)
            #expect(try to.readText().hasSuffix(",\"channelId\":\"\(channel)\",\"payload\":\(round)}"))
        }
        // message without payload: forwarded without one.
        var id = try a.request("message", "\"channelId\":\"\(channel)\"")
        let forwarded = try b.read()
        #expect(forwarded["type"] as? String == "channel_message" && forwarded["payload"] == nil && forwarded["channelId"] as? String == channel)
        try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        // close across shards.
        id = try b.request("close", "\"channelId\":\"\(channel)\"")
        try b.expect("channel_closed", replyTo: id, ["channelId": channel])
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
        id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":1")
        try expectReferenceError(a, replyToJSON: String(id), "Channel not found")
    }

    @Test("a channel to oneself: incoming_channel, then the reply; messages come back; close notifies first")
    func selfChannel() throws {
        let server = try CBServer(shards: 2, options: ConnectionBrokerOptions())
        defer { server.stop() }
        let a = try server.registered("s")
        var id = try a.request("open", "\"targetId\":\"\(a.connectionId!)\"")
        let incoming = try a.expect("incoming_channel", replyTo: nil, ["from": a.connectionId!, "channelId": nil])
        let channel = incoming["channelId"] as! String
        try a.expect("channel_opened", replyTo: id, ["channelId": channel, "targetId": a.connectionId!])
        id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":[1]")
        #expect(try a.readText().hasSuffix(",\"channelId\":\"\(channel)\",\"payload\":[1]}"))
        try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        id = try a.request("close", "\"channelId\":\"\(channel)\"")
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
        try a.expect("channel_closed", replyTo: id, ["channelId": channel])
    }

    @Test("cb_profile: reference by default, strict by name, anything else refused")
    func profileOption() throws {
        var o = ConnectionBrokerOptions()
        #expect(o.profile == .reference && o.value(forKey: "cb_profile") == "reference")
        try o.set("cb_profile", "strict")
        #expect(o.profile == .strict)
        #expect(throws: ConfigurationError.self) { try o.set("cb_profile", "lenient") }
        #expect(ConnectionBrokerOptions.keys.contains { $0.key == "cb_profile" })
    }
}
