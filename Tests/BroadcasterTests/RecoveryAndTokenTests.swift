import Foundation  // tests only: JSONSerialization, threads for racing publishers
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Broadcaster: recovery, token refresh and expiry, fan-out at scale", .serialized)
struct RecoveryAndTokenTests {
    /// Publishes `count` messages on one keep-alive REST connection, event "p<publisher>-<n>".
    private func publishLoop(_ server: BCServer, publisher: Int, count: Int, channel: String) throws {
        let c = try TestClient(port: server.port)
        for n in 0..<count {
            let body = #"{"channel":"\#(channel)","event":"p\#(publisher)-\#(n)","payload":{"n":\#(n)}}"#
            try c.send("POST /broadcaster/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer test-api-key\r\n" +
                       "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
            let r = try c.readResponse()
            guard r.status == 200 else { Issue.record("publish refused: \(r)"); return }
        }
    }

    /// Reads broadcasts until offset `last`; checks offsets `first...last` arrive each once, in
    /// order, with seq counting from `seqStart`.
    private func expectContiguous(_ c: BCClient, from first: Int, through last: Int, seqStart: Int = 1,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard first <= last else { return }
        var expectedOffset = first
        var expectedSeq = seqStart
        while expectedOffset <= last {
            let b = try c.expectBroadcast(sourceLocation: sourceLocation)
            let offset = b["offset"] as? Int ?? -1
            #expect(offset == expectedOffset, "gap or duplicate: got offset \(offset), expected \(expectedOffset)", sourceLocation: sourceLocation)
            #expect(b["seq"] as? Int == expectedSeq, sourceLocation: sourceLocation)
            if offset != expectedOffset { return }
            expectedOffset += 1
            expectedSeq += 1
        }
    }

    @Test("since-recovery while publishes race from other shards: no gap, no duplicate", arguments: backends)
    func recoveryUnderRacingPublishes(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend, shards: 4) {
            $0.history = [BroadcasterHistoryRule(pattern: "race*", limits: .init(maxMessages: 100_000, maxBytes: 64 << 20))]
        }
        let channel = "race"
        let publishers = 3, perPublisher = 300, total = publishers * perPublisher
        // The anchor sees everything from offset 1 and tells the test how far the channel got.
        let anchor = try server.authed(channels: [channel])
        try anchor.expectResult(try anchor.call("subscribe", #"{"channel":"race"}"#))
        let latest = Atomic<Int>(0)
        let epoch = Mutex<String>("")
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            do {
                for expected in 1...total {
                    let b = try anchor.expectBroadcast()
                    #expect(b["offset"] as? Int == expected && b["seq"] as? Int == expected)
                    if expected == 1 { epoch.withLock { $0 = b["epoch"] as? String ?? "" } }
                    latest.store(expected, ordering: .releasing)
                }
            } catch { Issue.record("anchor: \(error)") }
        }
        for p in 0..<publishers {
            DispatchQueue.global().async(group: group) {
                do { try publishLoop(server, publisher: p, count: perPublisher, channel: channel) } catch { Issue.record("publisher \(p): \(error)") }
            }
        }
        // Recovering subscribers join at different points while the publishers run.
        var joined: [(client: BCClient, since: Int, answeredAt: Int)] = []
        for step in 1...6 {
            #expect(waitUntil(timeoutMilliseconds: 20_000) { latest.load(ordering: .acquiring) >= step * total / 8 })
            let since = max(0, latest.load(ordering: .acquiring) - 7)
            let e = epoch.withLock { $0 }
            let c = try server.authed(channels: [channel])
            let id = try c.call("subscribe", #"{"channel":"race","since":{"offset":\#(since),"epoch":"\#(e)"}}"#)
            let result = try c.expectResult(id)
            #expect(result["recovered"] as? Bool == true, "\(result)")
            #expect(result["epoch"] as? String == e)
            let answeredAt = result["offset"] as? Int ?? -1
            #expect(answeredAt >= since)
            joined.append((c, since, answeredAt))
        }
        // A client from another epoch learns it cannot recover, and then gets live messages only.
        let stale = try server.authed(channels: [channel])
        let staleResult = try stale.expectResult(try stale.call("subscribe", #"{"channel":"race","since":{"offset":3,"epoch":"other"}}"#))
        #expect(staleResult["recovered"] as? Bool == false)
        let staleFrom = (staleResult["offset"] as? Int ?? 0) + 1

        #expect(group.wait(timeout: .now() + 60) == .success)
        for j in joined { try expectContiguous(j.client, from: j.since + 1, through: total) }
        try expectContiguous(stale, from: staleFrom, through: total)
        for j in joined { #expect(j.client.receivesNothing(milliseconds: 50)) }
    }

    @Test("token refresh: same subject refreshes claims and ends what it no longer allows; expiry closes with 4401", arguments: backends)
    func refreshAndExpiry(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend, leewaySeconds: 0)
        let c = try server.client()
        try c.expectResult(try c.call("auth", #"{"token":"\#(server.token(channels: ["a", "b"], expiresIn: 60))"}"#), #"{"success":true}"#)
        try c.expectResult(try c.call("subscribe", #"{"channel":"a"}"#))
        try c.expectResult(try c.call("subscribe", #"{"channel":"b"}"#))
        // Refresh with a token that drops channel b.
        let id = try c.call("auth", #"{"token":"\#(server.token(channels: ["a"], expiresIn: 60))"}"#)
        #expect(try c.readText() == #"{"method":"unsubscribed","params":{"channel":"b","reason":"the refreshed token does not authorize this channel"}}"#)
        try c.expectResult(id, #"{"success":true}"#)
        #expect(try server.restPublish(#"{"channel":"b","payload":1}"#).status == 200)
        #expect(try server.restPublish(#"{"channel":"a","payload":2}"#).status == 200)
        #expect(try c.expectBroadcast()["channel"] as? String == "a")  // b's message never came
        try c.expectError(try c.call("subscribe", #"{"channel":"b"}"#), "Unauthenticated")

        // Refreshed before expiry: the new exp counts.
        let d = try server.client()
        try d.expectResult(try d.call("auth", #"{"token":"\#(server.token(expiresIn: 60))"}"#))
        server.clock.advance(seconds: 30)
        try d.expectResult(try d.call("auth", #"{"token":"\#(server.token(expiresIn: 60))"}"#))
        server.clock.advance(seconds: 40)  // past the first token's exp, within the second's
        try d.expectResult(try d.call("heartbeat"))

        // c's token (exp +60) has expired now: told, then closed with 4401 by the sweep.
        let note = try c.read()
        #expect(note["method"] as? String == "tokenExpired" && (note["params"] as? JSON)?["expireTime"] is String, "\(note)")
        #expect(try c.expectClose() == 4401)
        server.clock.advance(seconds: 30)
        #expect(try d.read()["method"] as? String == "tokenExpired")
        #expect(try d.expectClose() == 4401)
        #expect(server.broadcaster.metrics.closedTokenExpired.current == 2)
        #expect(server.broadcaster.metrics.tokenRefreshes.current == 2)
    }

    @Test("expiry not enforced when configured off", arguments: backends)
    func expiryOff(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend, leewaySeconds: 0) { $0.enforceTokenExpiry = false }
        let c = try server.client()
        try c.expectResult(try c.call("auth", #"{"token":"\#(server.token(expiresIn: 5))"}"#))
        server.clock.advance(seconds: 10)
        #expect(c.receivesNothing(milliseconds: 150))
        try c.expectResult(try c.call("heartbeat"))
    }

    /// 1,000 by default; `BROADCASTER_SUBSCRIBERS=N` for more (each client and its server side
    /// take a descriptor: N is bounded by half the process's descriptor limit).
    @Test("1,000 subscribers on one channel receive a REST publish", arguments: backends)
    func thousandSubscribers(_ backend: IOBackendKind) throws {
        let count = Int(ProcessInfo.processInfo.environment["BROADCASTER_SUBSCRIBERS"] ?? "") ?? 1000
        let server = try BCServer(backend: backend, shards: 2)
        let token = server.token()
        var clients: [BCClient] = []
        for _ in 0..<count {
            let c = try server.client()
            // Pipelined: auth and subscribe in one write.
            try c.socket.send(TestClient.frame(opcode: 1, payload: Array(#"{"id":1,"method":"auth","params":{"token":"\#(token)"}}"#.utf8))
                              + TestClient.frame(opcode: 1, payload: Array(#"{"id":2,"method":"subscribe","params":{"channel":"test-channel"}}"#.utf8)))
            clients.append(c)
        }
        for c in clients {
            try c.expectResult(1, #"{"success":true}"#)
            try c.expectResult(2)
        }
        let r = try server.restPublish(#"{"channel":"test-channel","event":"all","payload":"hello"}"#)
        #expect(r.status == 200)
        var received = 0
        for c in clients {
            let b = try c.expectBroadcast()
            if b["event"] as? String == "all" && b["seq"] as? Int == 1 && b["payload"] as? String == "hello" { received += 1 }
        }
        #expect(received == count)
        #expect(server.broadcaster.metrics.deliveries.current == count)
    }

    @Test("a subscriber that does not read is cut by the slow-consumer policy; the others get everything", arguments: backends)
    func slowSubscriber(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend, broker: { $0.io.maxSendQueueBytes = 256 * 1024; $0.http.maxBodyBytes = 1 << 20 })
        let slow = try server.authed()
        var rcv: Int32 = 4096
        setsockopt(slow.socket.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
        try slow.expectResult(try slow.call("subscribe", #"{"channel":"test-channel"}"#))
        let fast = try server.authed()
        try fast.expectResult(try fast.call("subscribe", #"{"channel":"test-channel"}"#))
        let payload = String(repeating: "p", count: 60_000)
        let rest = try TestClient(port: server.port)
        // 24 MB toward a reader that reads nothing: beyond what kernel buffers absorb.
        for i in 0..<400 {
            let body = #"{"channel":"test-channel","event":"\#(i)","payload":"\#(payload)"}"#
            try rest.send("POST /broadcaster/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer test-api-key\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
            #expect(try rest.readResponse().status == 200)
            #expect(try fast.expectBroadcast()["seq"] as? Int == i + 1)
        }
        #expect(server.broadcaster.metrics.deliveriesDropped.current >= 1)
        // The slow socket is closed by the policy (1013 when its close frame still fits); its
        // handler close runs, so only the fast subscriber remains.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { server.broadcaster.metrics.connections.current == 1 })
        #expect(server.broadcaster.metrics.subscriptions.current == 1)
    }
}
