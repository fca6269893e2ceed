import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Connection broker over real sockets", .serialized)
struct ConnectionBrokerTests {
    @Test("register -> registered (first broker id is 1), list_by_role in registration order")
    func registerAndList() throws {
        let server = try CBServer()
        defer { server.stop() }
        let a = try server.client()
        let id = try a.request("register", "\"role\":\"alpha\"")
        let m = try a.expect("registered", replyTo: id, ["connectionId": nil])
        #expect(m["id"] as? Int == 1)
        a.connectionId = m["connectionId"] as? String
        #expect(isUUIDv4(a.connectionId!))
        let b = try server.registered("alpha"), c = try server.registered("beta")
        #expect(Set([a.connectionId, b.connectionId, c.connectionId]).count == 3)
        #expect(try a.list("alpha") == [a.connectionId!, b.connectionId!])
        #expect(try c.list("beta") == [c.connectionId!])
        #expect(try a.list("nobody") == [])
        #expect(try a.list("") == [])
        // Role strings are exact: no trimming, case-sensitive, any Unicode.
        let d = try server.registered("Alpha ✓ \"q\"\n")
        #expect(try d.list("Alpha ✓ \"q\"\n") == [d.connectionId!])
        #expect(try d.list("alpha") == [a.connectionId!, b.connectionId!])
        // Disconnect removes from the role list.
        b.socket.shutdownWrite()
        #expect(waitUntil { (try? a.list("alpha")) == [a.connectionId!] })
        #expect(server.cb.metrics.registrations.load(ordering: .relaxed) == 4)
    }

    @Test("channel flow across two shards: open, incoming_channel, messages both ways with confirmations, close")
    func channelFlowAcrossShards() throws {
        let server = try CBServer(shards: 2)
        defer { server.stop() }
        var pool: [CBClient] = []
        var a: CBClient? = nil, b: CBClient? = nil
        for i in 0..<16 {
            let c = try server.registered("pool-\(i)")
            pool.append(c)
            if a == nil { a = c } else if server.shard(of: c) != server.shard(of: a!) { b = c; break }
        }
        guard let a, let b else { Issue.record("no two clients on different shards"); return }
        #expect(server.shard(of: a) != server.shard(of: b))

        let channel = try a.open(to: b)
        let payloads = [
            #"{"any":"data"}"#,
            #"{ "nested" : [1, 2.5e-3, -0, true, false, null, {"k": "\u00e9\"\\/\ud83d\ude00"}] , "x":"y" }"#,
            #""just a string""#, "42", "null", "[]", "{}", "\"héllo ✓ 😀\"",
        ]
        for p in payloads {
            let id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":\(p)")
            // The payload is forwarded as the exact bytes sent.
            let text = try b.readText()
            let m = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! JSON
            b.check(m, "channel_message", replyTo: nil, ["channelId": channel], extraKeys: ["payload"])
            #expect(text == "{\"type\":\"channel_message\",\"id\":\(m["id"] as! Int),\"channelId\":\"\(channel)\",\"payload\":\(p)}")
            try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        }
        // And back, several in flight, in order.
        var ids: [Int] = []
        for i in 0..<50 { ids.append(try b.request("message", "\"channelId\":\"\(channel)\",\"payload\":{\"n\":\(i)}")) }
        for i in 0..<50 {
            let m = try a.read()
            a.check(m, "channel_message", replyTo: nil, ["channelId": channel], extraKeys: ["payload"])
            #expect((m["payload"] as? JSON)?["n"] as? Int == i)
        }
        for id in ids { try b.expect("channel_message_sent", replyTo: id, ["channelId": channel]) }

        let closeId = try b.request("close", "\"channelId\":\"\(channel)\"")
        try b.expect("channel_closed", replyTo: closeId, ["channelId": channel])
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
        // The channel is gone for both.
        let m1 = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: m1, "Channel not found", ["channelId": channel])
        let c1 = try b.request("close", "\"channelId\":\"\(channel)\"")
        try b.expectFailure("channel_close_failed", replyTo: c1, "Channel not found", ["channelId": channel])
        #expect(a.receivesNothing() && b.receivesNothing())
        #expect(server.cb.counts.channels == 0)
        #expect(server.cb.metrics.openChannels.load(ordering: .relaxed) == 0)
    }

    @Test("every request before register fails with Not registered; unknown type still wins")
    func beforeRegister() throws {
        let server = try CBServer()
        defer { server.stop() }
        let x = try server.client()
        let target = try server.registered("t")
        let t = target.connectionId!
        var id = try x.request("list_by_role", "\"role\":\"t\"")
        try x.expectFailure("list_by_role_failed", replyTo: id, "Not registered")
        id = try x.request("open", "\"targetId\":\"\(t)\"")
        try x.expectFailure("channel_open_failed", replyTo: id, "Not registered", ["targetId": t])
        let ch = "8d1f2b7a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
        id = try x.request("message", "\"channelId\":\"\(ch)\",\"payload\":{}")
        try x.expectFailure("channel_message_failed", replyTo: id, "Not registered", ["channelId": ch])
        id = try x.request("close", "\"channelId\":\"\(ch)\"")
        try x.expectFailure("channel_close_failed", replyTo: id, "Not registered", ["channelId": ch])
        id = try x.request("frobnicate")
        try x.expectFailure("error", replyTo: id, "Unknown message type: frobnicate")
        // The target saw nothing.
        #expect(target.receivesNothing())
        // Registering afterwards works; a second register fails.
        try x.register("late")
        id = try x.request("register", "\"role\":\"again\"")
        try x.expectFailure("register_failed", replyTo: id, "Already registered")
        #expect(try x.list("late") == [x.connectionId!])
        #expect(try x.list("again") == [])
    }

    @Test("register failures: missing, ill-typed, too long role; bad id")
    func registerFailures() throws {
        let server = try CBServer(options: { var o = ConnectionBrokerOptions.strictProfile(); o.maxRoleBytes = 16; return o }())
        defer { server.stop() }
        let x = try server.client()
        var id = try x.request("register")
        try x.expectFailure("register_failed", replyTo: id, "Missing or invalid field: role")
        for bad in ["5", "null", "true", "[\"a\"]", "{\"r\":1}"] {
            id = try x.request("register", "\"role\":\(bad)")
            try x.expectFailure("register_failed", replyTo: id, "Missing or invalid field: role")
        }
        id = try x.request("register", "\"role\":\"\(String(repeating: "r", count: 17))\"")
        try x.expectFailure("register_failed", replyTo: id, "Role too long")
        id = try x.request("list_by_role", "\"role\":\"\(String(repeating: "r", count: 17))\"")
        try x.expectFailure("list_by_role_failed", replyTo: id, "Not registered")
        // 16 bytes exactly is fine (é is 2 bytes: 8 of them = 16 bytes).
        try x.register(String(repeating: "é", count: 8))
        id = try x.request("list_by_role", "\"role\":\"\(String(repeating: "é", count: 9))\"")
        try x.expectFailure("list_by_role_failed", replyTo: id, "Role too long")
        id = try x.request("list_by_role")
        try x.expectFailure("list_by_role_failed", replyTo: id, "Missing or invalid field: role")
        // A request without an id is answered without replyTo.
        try x.sendRaw(#"{"type":"list_by_role","role":"zz"}"#)
        let m = try x.read()
        x.check(m, "connections", replyTo: nil, extraKeys: ["ids"])
        // An id that is not a safe integer: the matching failure, without replyTo.
        for bad in ["\"7\"", "1.5", "1e3", "null", "9007199254740992", "[1]"] {
            try x.sendRaw("{\"type\":\"list_by_role\",\"id\":\(bad),\"role\":\"zz\"}")
            try x.expectFailure("list_by_role_failed", replyTo: nil, "Invalid field: id (expected an integer)")
        }
        // Negative and large safe integers are echoed exactly.
        for good in [0, -5, 9_007_199_254_740_991] {
            try x.sendRaw("{\"type\":\"list_by_role\",\"id\":\(good),\"role\":\"zz\"}")
            x.check(try x.read(), "connections", replyTo: good, extraKeys: ["ids"])
        }
    }

    @Test("open failures: self, unknown target, malformed and missing targetId, non-party message and close")
    func openAndPartyFailures() throws {
        let server = try CBServer()
        defer { server.stop() }
        let a = try server.registered("p"), b = try server.registered("p"), c = try server.registered("q")
        let me = a.connectionId!
        var id = try a.request("open", "\"targetId\":\"\(me)\"")
        try a.expectFailure("channel_open_failed", replyTo: id, "Cannot open a channel to yourself", ["targetId": me])
        let ghost = "0f2c8e4a-1b3d-4c5e-9f60-718293a4b5c6"
        id = try a.request("open", "\"targetId\":\"\(ghost)\"")
        try a.expectFailure("channel_open_failed", replyTo: id, "Target connection not found", ["targetId": ghost])
        for weird in ["not-a-uuid", "", me.uppercased(), " " + me] {
            id = try a.request("open", "\"targetId\":\(jsonString(weird))")
            try a.expectFailure("channel_open_failed", replyTo: id, "Target connection not found", ["targetId": weird])
        }
        id = try a.request("open")
        try a.expectFailure("channel_open_failed", replyTo: id, "Missing or invalid field: targetId")
        id = try a.request("open", "\"targetId\":123")
        try a.expectFailure("channel_open_failed", replyTo: id, "Missing or invalid field: targetId")
        // An unregistered (but connected) socket is not a target.
        let loner = try server.client()
        _ = loner
        #expect(b.receivesNothing(milliseconds: 50))

        let channel = try a.open(to: b)
        // c is not a party: message and close fail exactly like an unknown channel, and nothing
        // reaches a or b.
        id = try c.request("message", "\"channelId\":\"\(channel)\",\"payload\":{\"evil\":true}")
        try c.expectFailure("channel_message_failed", replyTo: id, "Channel not found", ["channelId": channel])
        id = try c.request("close", "\"channelId\":\"\(channel)\"")
        try c.expectFailure("channel_close_failed", replyTo: id, "Channel not found", ["channelId": channel])
        id = try c.request("message", "\"channelId\":\"\(ghost)\",\"payload\":1")
        try c.expectFailure("channel_message_failed", replyTo: id, "Channel not found", ["channelId": ghost])
        id = try c.request("message", "\"channelId\":\"nope\",\"payload\":1")
        try c.expectFailure("channel_message_failed", replyTo: id, "Channel not found", ["channelId": "nope"])
        #expect(a.receivesNothing() && b.receivesNothing())
        // Field errors on message/close.
        id = try a.request("message", "\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: id, "Missing or invalid field: channelId")
        id = try a.request("message", "\"channelId\":7,\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: id, "Missing or invalid field: channelId")
        id = try a.request("message", "\"channelId\":\"\(channel)\"")
        try a.expectFailure("channel_message_failed", replyTo: id, "Missing field: payload", ["channelId": channel])
        id = try a.request("close")
        try a.expectFailure("channel_close_failed", replyTo: id, "Missing or invalid field: channelId")
        id = try a.request("close", "\"channelId\":null")
        try a.expectFailure("channel_close_failed", replyTo: id, "Missing or invalid field: channelId")
        // The channel still works, from the target's side too.
        id = try b.request("message", "\"channelId\":\"\(channel)\",\"payload\":null")
        let nullMessage = try a.readText()
        #expect(nullMessage.hasSuffix(",\"channelId\":\"\(channel)\",\"payload\":null}"), "\(nullMessage)")
        try b.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        // The target may close.
        id = try b.request("close", "\"channelId\":\"\(channel)\"")
        try b.expect("channel_closed", replyTo: id, ["channelId": channel])
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
    }

    @Test("self channels when allowed: messages come back to the sender")
    func selfChannelAllowed() throws {
        let server = try CBServer(options: { var o = ConnectionBrokerOptions.strictProfile(); o.allowSelfChannels = true; return o }())
        defer { server.stop() }
        let a = try server.registered("solo")
        let me = a.connectionId!
        var id = try a.request("open", "\"targetId\":\"\(me)\"")
        let m1 = try a.read(), m2 = try a.read()
        let (incoming, opened) = m1["type"] as? String == "incoming_channel" ? (m1, m2) : (m2, m1)
        let channel = opened["channelId"] as! String
        a.check(opened, "channel_opened", replyTo: id, ["channelId": channel, "targetId": me])
        a.check(incoming, "incoming_channel", replyTo: nil, ["from": me, "channelId": channel])
        id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":[1]")
        #expect(try a.readText().hasSuffix("\"payload\":[1]}"))
        try a.expect("channel_message_sent", replyTo: id, ["channelId": channel])
        id = try a.request("close", "\"channelId\":\"\(channel)\"")
        try a.expect("channel_closed", replyTo: id, ["channelId": channel])
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
    }

    @Test("a peer disconnect closes all its channels and notifies the other parties")
    func peerDisconnect() throws {
        let server = try CBServer()
        defer { server.stop() }
        let a = try server.registered("x"), b = try server.registered("x"), c = try server.registered("x")
        let ab1 = try a.open(to: b), ab2 = try a.open(to: b), cb = try c.open(to: b), ac = try a.open(to: c)
        #expect(server.cb.counts.channels == 4)
        b.socket.shutdownWrite()  // b goes away (close handshake aborted)
        var notified: Set<String> = []
        for _ in 0..<2 { notified.insert(try a.expect("channel_closed_notification", replyTo: nil, ["channelId": nil])["channelId"] as! String) }
        #expect(notified == [ab1, ab2])
        try c.expect("channel_closed_notification", replyTo: nil, ["channelId": cb])
        #expect(waitUntil { server.cb.counts == (2, 1) })
        // The a-c channel is untouched.
        let id = try a.request("message", "\"channelId\":\"\(ac)\",\"payload\":\"still here\"")
        try c.expect("channel_message", replyTo: nil, ["channelId": ac, "payload": "still here"])
        try a.expect("channel_message_sent", replyTo: id, ["channelId": ac])
        let m = try a.request("message", "\"channelId\":\"\(ab1)\",\"payload\":1")
        try a.expectFailure("channel_message_failed", replyTo: m, "Channel not found", ["channelId": ab1])
        let bid = b.connectionId!
        let o = try a.request("open", "\"targetId\":\"\(bid)\"")
        try a.expectFailure("channel_open_failed", replyTo: o, "Target connection not found", ["targetId": bid])
        #expect(server.cb.metrics.channelsClosedByDisconnect.load(ordering: .relaxed) == 3)
        #expect(server.cb.metrics.registeredConnections.load(ordering: .relaxed) == 2)
    }

    @Test("1,000 channels open at once between two clients on different shards")
    func thousandChannels() throws {
        let server = try CBServer(shards: 2)
        defer { server.stop() }
        var pool: [CBClient] = []
        var a: CBClient? = nil, b: CBClient? = nil
        for i in 0..<16 {
            let c = try server.registered("k\(i)")
            pool.append(c)
            if a == nil { a = c } else if server.shard(of: c) != server.shard(of: a!) { b = c; break }
        }
        guard let a, let b else { Issue.record("no two clients on different shards"); return }
        let n = 1000
        var opens: [Int] = []
        for _ in 0..<n { opens.append(try a.request("open", "\"targetId\":\"\(b.connectionId!)\"")) }
        var channels: [String] = []
        for id in opens {
            let m = try a.expect("channel_opened", replyTo: id, ["channelId": nil, "targetId": b.connectionId!])
            channels.append(m["channelId"] as! String)
        }
        var incoming: [String] = []
        for _ in 0..<n { incoming.append(try b.expect("incoming_channel", replyTo: nil, ["from": a.connectionId!, "channelId": nil])["channelId"] as! String) }
        #expect(incoming == channels)  // same order: one sending thread
        #expect(Set(channels).count == n)
        #expect(server.cb.counts.channels == n)
        // One message per channel, then one back on each.
        var sends: [Int] = []
        for (i, ch) in channels.enumerated() { sends.append(try a.request("message", "\"channelId\":\"\(ch)\",\"payload\":\(i)")) }
        for (i, ch) in channels.enumerated() {
            let m = try b.read()
            b.check(m, "channel_message", replyTo: nil, ["channelId": ch], extraKeys: ["payload"])
            #expect(m["payload"] as? Int == i)
        }
        for (i, id) in sends.enumerated() { try a.expect("channel_message_sent", replyTo: id, ["channelId": channels[i]]) }
        let backIds = try channels.map { ch in try b.request("message", "\"channelId\":\"\(ch)\",\"payload\":\"r\"") }
        for ch in channels { try a.expect("channel_message", replyTo: nil, ["channelId": ch, "payload": "r"]) }
        for (i, ch) in channels.enumerated() { try b.expect("channel_message_sent", replyTo: backIds[i], ["channelId": ch]) }
        // Close half explicitly, the rest by disconnect.
        let closeIds = try channels.prefix(n / 2).map { ch in try a.request("close", "\"channelId\":\"\(ch)\"") }
        for (i, ch) in channels.prefix(n / 2).enumerated() { try a.expect("channel_closed", replyTo: closeIds[i], ["channelId": ch]) }
        for ch in channels.prefix(n / 2) { try b.expect("channel_closed_notification", replyTo: nil, ["channelId": ch]) }
        a.socket.shutdownWrite()
        var rest: Set<String> = []
        for _ in 0..<(n / 2) { rest.insert(try b.expect("channel_closed_notification", replyTo: nil, ["channelId": nil])["channelId"] as! String) }
        #expect(rest == Set(channels.suffix(n / 2)))
        #expect(waitUntil { server.cb.counts.channels == 0 })
        #expect(server.cb.metrics.openChannels.load(ordering: .relaxed) == 0)
    }

    @Test("limits: channels per connection, connections per role, list size")
    func limits() throws {
        var o = ConnectionBrokerOptions.strictProfile()
        o.maxChannelsPerConnection = 2
        o.maxConnectionsPerRole = 3
        o.maxListResults = 2
        let server = try CBServer(options: o)
        defer { server.stop() }
        let a = try server.registered("r"), b = try server.registered("r"), c = try server.registered("r")
        let x = try server.client()
        let id = try x.request("register", "\"role\":\"r\"")
        try x.expectFailure("register_failed", replyTo: id, "Too many connections for role")
        try x.register("other")
        #expect(try x.list("r") == [a.connectionId!, b.connectionId!])  // cut at 2, oldest first
        #expect(server.cb.metrics.listTruncated.load(ordering: .relaxed) == 1)
        _ = try a.open(to: b)
        _ = try a.open(to: c)
        var r = try a.request("open", "\"targetId\":\"\(x.connectionId!)\"")
        try a.expectFailure("channel_open_failed", replyTo: r, "Too many open channels", ["targetId": x.connectionId!])
        _ = try x.open(to: b)
        r = try c.request("open", "\"targetId\":\"\(b.connectionId!)\"")
        try c.expectFailure("channel_open_failed", replyTo: r, "Target has too many open channels", ["targetId": b.connectionId!])
        #expect(server.cb.metrics.tooManyChannels.load(ordering: .relaxed) == 2)
        #expect(server.cb.metrics.roleFull.load(ordering: .relaxed) == 1)
    }

    @Test("the payload at exactly the depth limit is forwarded; one deeper is refused")
    func depthBoundary() throws {
        var o = ConnectionBrokerOptions.strictProfile()
        o.maxJSONDepth = 10
        let server = try CBServer(options: o)
        defer { server.stop() }
        let a = try server.registered("d"), b = try server.registered("d")
        let ch = try a.open(to: b)
        let ok = String(repeating: "[", count: 9) + String(repeating: "]", count: 9)  // depths 2...10
        var id = try a.request("message", "\"channelId\":\"\(ch)\",\"payload\":\(ok)")
        #expect(try b.readText().hasSuffix("\"payload\":\(ok)}"))
        try a.expect("channel_message_sent", replyTo: id, ["channelId": ch])
        let deep = "[" + ok + "]"
        id = try a.request("message", "\"channelId\":\"\(ch)\",\"payload\":\(deep)")
        try a.expectFailure("error", replyTo: nil, "JSON nesting too deep")
        #expect(b.receivesNothing())
    }
}
