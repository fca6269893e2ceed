import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Connection lifecycle and shutdown", .serialized)
struct LifecycleTests {
    @Test("10,000 connections opened and closed leak no file descriptor", arguments: backends)
    func tenThousandConnections(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        // Warm up so lazily created descriptors (none expected) exist before the baseline.
        do {
            let c = try server.client()
            try c.send(get("/n/warm"))
            _ = try c.readResponse()
        }
        #expect(server.waitForNoConnections())
        let baseline = openFileDescriptorCount()
        var served = 0
        for batch in 0..<20 {
            var clients: [TestClient] = []
            for _ in 0..<500 { clients.append(try server.client()) }
            // Every tenth client makes a request; the rest connect and leave.
            for (i, c) in clients.enumerated() where i % 10 == batch % 10 {
                try c.send(get("/n/\(i)"))
                #expect(try c.readResponse().bodyText == "\(i)")
                served += 1
            }
            clients.removeAll()
        }
        #expect(served == 1000)
        #expect(server.waitForNoConnections())
        #expect(server.metric("switchboard_connections_accepted_total") == 10_001)
        #expect(server.metric("switchboard_connections_closed_total") == 10_001)
        #expect(openFileDescriptorCount() == baseline)
    }

    @Test("shutdown closes idle keep-alive connections and joins every thread", arguments: backends)
    func gracefulShutdown(backend: IOBackendKind) throws {
        let before = openFileDescriptorCount()
        let server = try ServerFixture(backend: backend)
        let idle = try server.client()
        try idle.send(get("/n/1"))
        #expect(try idle.readResponse().bodyText == "1")
        let start = monotonicMilliseconds()
        server.broker.shutdown(graceMilliseconds: 5000)
        #expect(monotonicMilliseconds() - start < 2000)
        #expect(idle.isClosedByServer())
        // Rings, eventfds, epoll fds and the listening socket are all released (only the test
        // client's own socket remains).
        #expect(openFileDescriptorCount() == before + 1)
    }

    @Test("shutdown cuts a stalled request at the grace deadline", arguments: backends)
    func shutdownDeadline(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        let stalled = try server.client()
        try stalled.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        #expect(waitUntil { server.broker.openConnections == 1 })
        let start = monotonicMilliseconds()
        server.broker.shutdown(graceMilliseconds: 300)
        let took = monotonicMilliseconds() - start
        #expect(took >= 250 && took < 3000)
        #expect(stalled.isClosedByServer())
    }

    @Test("port in use is reported, not crashed on")
    func portInUse() throws {
        let server = try ServerFixture(backend: .epoll)
        defer { server.stop() }
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = server.port
        let second = Broker(configuration: c, logger: .discarding) { _ in TestWorker() }
        #expect(throws: IOError.self) { try second.start() }
    }
}
