@testable import Switchboard
@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

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
        let request = Array("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8)
        let response = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 8)
        defer { response.deallocate() }
        var fds = [Int32](repeating: -1, count: Self.connections)
        defer { for fd in fds where fd >= 0 { Glibc.close(fd) } }
        for i in fds.indices { fds[i] = try openBlockingWebSocket(port: server.port, request, response) }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == Self.connections })
        #expect(Self.connections >= Shard.prefetchMinimumConnections)

        // Round 1: one message on every socket, all sent before any reply is read.
        for (i, fd) in fds.enumerated() { try sendMasked(fd, "round 1, socket \(i)") }
        for (i, fd) in fds.enumerated() { try expectEcho(fd, "round 1, socket \(i)") }

        // Round 2: every third socket sends and closes at once (its echo has nowhere to go; its
        // slot is freed in the same turns as the others' reads); the rest send and must get
        // theirs. Closed ones reopen afterwards and take freed slots.
        var survivors: [Int] = []
        for (i, fd) in fds.enumerated() {
            try sendMasked(fd, "round 2, socket \(i)")
            if i % 3 == 0 {
                Glibc.close(fd)
                fds[i] = -1
            } else {
                survivors.append(i)
            }
        }
        for i in survivors { try expectEcho(fds[i], "round 2, socket \(i)") }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == survivors.count })
        for i in fds.indices where fds[i] < 0 { fds[i] = try openBlockingWebSocket(port: server.port, request, response) }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_connections_open") == Self.connections })

        // Round 3: every socket again, the reopened ones in the freed slots.
        for (i, fd) in fds.enumerated() { try sendMasked(fd, "round 3, socket \(i)") }
        for (i, fd) in fds.enumerated() { try expectEcho(fd, "round 3, socket \(i)") }
        #expect(recorder.closes.count == Self.connections - survivors.count, "only the sockets the test closed were closed")
    }

    /// One masked text frame (payloads here are under 126 bytes).
    private func sendMasked(_ fd: Int32, _ text: String) throws {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let key: [UInt8] = [0x37, 0xfa, 0x21, 0x3d]
        var frame: [UInt8] = [0x81, 0x80 | UInt8(payload.count)] + key
        for (i, b) in payload.enumerated() { frame.append(b ^ key[i % 4]) }
        let sent = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        try #require(sent == frame.count, "send: \(sent), errno \(errno)")
    }

    /// Reads exactly the unmasked echo of `text` (the socket has a 10 s receive timeout).
    private func expectEcho(_ fd: Int32, _ text: String) throws {
        let expected: [UInt8] = [0x81, UInt8(text.utf8.count)] + Array(text.utf8)
        var got = [UInt8](repeating: 0, count: expected.count)
        var filled = 0
        while filled < expected.count {
            let n = got.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + filled, expected.count - filled, 0) }
            if n < 0 && errno == EINTR { continue }
            try #require(n > 0, "echo of \"\(text)\": recv \(n), errno \(errno)")
            filled += n
        }
        #expect(got == expected, "echo of \"\(text)\"")
    }
}
