@testable import Switchboard
@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing

/// The event loops' look-ahead (`Shard.prefetchAhead`, issue 16 item 3) runs only from
/// `prefetchMinimumConnections` open connections, so these hold more than that on one shard and
/// make every socket ready in the same turns: each event is dispatched with the next two
/// prefetched, including events of sockets closed a moment before (stale slots, freed and
/// reused). What is checked is that every echo comes back exact and that the sockets left
/// alone never notice the others closing; the look-ahead is a hint and must change nothing.
@Suite("Event loop look-ahead over many ready sockets", .serialized)
struct SlotPrefetchTests {
    static let connections = Shard.prefetchMinimumConnections + 88

    @Test("every echo exact above the look-ahead's threshold, with sockets closing amid the burst", arguments: backends)
    func echoesAboveThreshold(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder) { c in
            c.io.shardCount = 1
            c.io.idleTimeoutMilliseconds = 600_000
        }
        defer { server.stop() }
        // Optional so that round 2 can close some (a client closes its socket when released).
        var clients: [TestClient?] = try (0..<Self.connections).map { _ in try upgraded(server) }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == Self.connections })
        #expect(Self.connections >= Shard.prefetchMinimumConnections)

        // Round 1: one message on every socket, all sent before any reply is read.
        for (i, c) in clients.enumerated() { try c!.sendText("round 1, socket \(i)") }
        for (i, c) in clients.enumerated() { try expectEcho(c!, "round 1, socket \(i)") }

        // Round 2: every third socket sends and closes at once (its echo has nowhere to go; its
        // slot is freed in the same turns as the others' reads); the rest send and must get
        // theirs. Closed ones reopen afterwards and take freed slots.
        var survivors: [Int] = []
        for i in clients.indices {
            try clients[i]!.sendText("round 2, socket \(i)")
            if i % 3 == 0 {
                clients[i] = nil
            } else {
                survivors.append(i)
            }
        }
        for i in survivors { try expectEcho(clients[i]!, "round 2, socket \(i)") }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == survivors.count })
        for i in clients.indices where clients[i] == nil { clients[i] = try upgraded(server) }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == Self.connections })

        // Round 3: every socket again, the reopened ones in the freed slots.
        for (i, c) in clients.enumerated() { try c!.sendText("round 3, socket \(i)") }
        for (i, c) in clients.enumerated() { try expectEcho(c!, "round 3, socket \(i)") }
        #expect(recorder.closes.count == Self.connections - survivors.count, "only the sockets the test closed were closed")
    }

    @Test("TLS connections too: every echo exact above the threshold, with connections dropped amid the burst and their slots reused (the look-ahead asks for each one's record-layer state)",
          arguments: backends)
    func tlsEchoesAboveThreshold(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        // Every handshake at once: more than the default 256 in flight.
        let server = try tlsServer(backend, files, shards: 1) { $0.maxHandshakesInFlightPerShard = 2 * Self.connections }
        defer { server.stop() }
        // Python's websockets over ssl (TLS 1.3, AES-GCM: the own record layer), all at once.
        let clients = try HeldConnection(port: server.broker.tlsPort, ca: files.ca, mode: "many", [String(Self.connections)])
        #expect(server.metric("switchboard_connections_open") == Self.connections)
        #expect(server.metric("switchboard_tls_own_record_sessions_total") == Self.connections)
        // The rounds (tls_client.py, "many"): every echo checked there, "ok" only if all came back.
        #expect(try clients.request() == "ok\n")
        #expect(clients.process.terminationStatus == 0)
        #expect(server.metric("switchboard_tls_own_record_sessions_total") == Self.connections + (Self.connections + 2) / 3,
                "the dropped third reconnected")
    }

    /// A client upgraded to WebSocket on `/ws` (10 s receive timeout: 600 sockets share a turn).
    private func upgraded(_ server: ServerFixture) throws -> TestClient {
        let c = try server.client(timeoutMilliseconds: 10_000)
        let r = try c.upgrade(path: "/ws")
        try #require(r.status == 101, "upgrade: \(r.statusLine)")
        return c
    }

    /// The exact unmasked echo of `text`.
    private func expectEcho(_ c: TestClient, _ text: String) throws {
        #expect(try c.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array(text.utf8)), "echo of \"\(text)\"")
    }
}
