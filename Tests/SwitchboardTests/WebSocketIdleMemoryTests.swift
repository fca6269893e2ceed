@testable import Switchboard
@testable import SwitchboardIO
@testable import SwitchboardWebSocket
import SwitchboardTestSupport
import CLiburing
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16 item 2: what an idle WebSocket costs the server. The layouts are checked exactly
/// (they are the design: see `WebSocketConnection`, `WebSocketSession`, `Connection`), and the
/// heap a server holds per idle WebSocket is measured over real sockets with glibc's
/// `mallinfo2` (bytes in use, all arenas) on both backends, so a field added to the per-socket
/// state fails here rather than in a benchmark nobody reruns.
///
/// The heap figure is the part of RSS that grows with connections through malloc: the session
/// object. The slot tables (the shard's `Connection`s and timer lists, the protocol layer's
/// `ConnectionSlot`s and tenant words) are preallocated with one large allocation each, mapped
/// by the kernel and resident as slots are used: they are covered by the layout checks, not by
/// `mallinfo2` (their allocation is in the "before" figure).
@Suite("Idle WebSocket memory", .serialized)
struct WebSocketIdleMemoryTests {
    /// Idle WebSockets opened for the heap measurement (after `warmUp`).
    static let connections = 2000
    /// Opened first, so that one-off growth (the loop's scratch arrays) is not charged to the
    /// measured connections.
    static let warmUp = 256
    /// Heap bytes per idle WebSocket the server may hold: the 144-byte session chunk and 21
    /// bytes of measurement noise (the shard thread allocates while we read). The protocol
    /// slots are preallocated now (`ConnectionTable`), so nothing else grows with connections.
    /// Before issue 16 item 2 this measured ~450; with the slot array, ~190; now ~145.
    static let maxHeapBytesPerConnection = 165.0

    @Test("layouts: codec 75 bytes, session object 136, shard slot 64 and its side 16, protocol slot 16")
    func layouts() {
        #expect(MemoryLayout<WebSocketConnection>.size <= 75, "codec \(MemoryLayout<WebSocketConnection>.size)")
        // Exactly one cache line (the table is 64-byte aligned: an echo touches one line of it).
        #expect(MemoryLayout<Connection>.stride == 64, "shard slot \(MemoryLayout<Connection>.stride)")
        #expect(MemoryLayout<ConnectionSide>.stride <= 16, "shard slot's side \(MemoryLayout<ConnectionSide>.stride)")
        #expect(MemoryLayout<ConnectionSlot>.stride <= 16, "protocol slot \(MemoryLayout<ConnectionSlot>.stride)")
        // The session's heap chunk, measured: 1,000 sessions and their codecs (no extras). The
        // counter is process-wide, so a thread left over from an earlier test can allocate
        // during one attempt (CI saw 149.2): the smallest of 5 attempts is the figure.
        let settings = WebSocketCodecSettings()
        var perSession = Double.infinity
        for _ in 0..<5 {
            var sessions: [WebSocketSession] = []
            sessions.reserveCapacity(1000)
            let before = Int(sb_malloc_in_use())
            for _ in 0..<1000 {
                sessions.append(WebSocketSession(WebSocketConnection(settings: settings), token: nil, compresses: false))
            }
            perSession = min(perSession, Double(Int(sb_malloc_in_use()) - before) / 1000)
            withExtendedLifetime(sessions) {}
        }
        print("WebSocketSession: \(perSession) heap bytes each")
        // 136-byte object + 8-byte malloc header = a 144-byte chunk.
        #expect(perSession <= 144, "session \(perSession) bytes")
    }

    /// `WebSocketSession`'s layout note ("Cache lines"): the fields a message whole in one read
    /// touches lie in object bytes 0x30-0x7f (two 64-byte lines at any of malloc's 16-byte
    /// alignments; at 1,000 connections each is a cache miss per message, issue 16 item 3),
    /// and the one kept out of that run on purpose lies after it. Addresses of a final
    /// class's stored properties, taken in place.
    @Test("the session's hot fields lie in object bytes 0x30-0x7f, as its layout note says")
    func hotFieldOffsets() {
        let session = WebSocketSession(WebSocketConnection(settings: WebSocketCodecSettings()), token: nil, compresses: false)
        let base = Int(bitPattern: Unmanaged.passUnretained(session).toOpaque())
        func offset<T>(_ pointer: UnsafeMutablePointer<T>) -> Int { Int(bitPattern: pointer) - base }
        let hot = WebSocketSession.hotBytes
        #expect(hot == 0x30..<0x80, "the layout note names 0x30-0x7f")
        let codec = withUnsafeMutablePointer(to: &session.connection) { offset($0) }
        // The codec's fields every frame reads: its settings (in the assembly buffer), counters and state.
        let codecHot = [\WebSocketConnection.messageBuffer.settings, \.messagesCompleted, \.frameKey, \.receiveState, \.closeState,
                        \.headerFilled, \.messageOpcode, \.validator]
            .map { codec + MemoryLayout<WebSocketConnection>.offset(of: $0)! }
        let sessionHot = [withUnsafeMutablePointer(to: &session.lifecycle) { offset($0) },
                          withUnsafeMutablePointer(to: &session.resumeQueued) { offset($0) },
                          withUnsafeMutablePointer(to: &session.turnStartNanoseconds) { offset($0) },
                          withUnsafeMutablePointer(to: &session.token) { offset($0) }]
        print("WebSocketSession: codec at \(codec), its hot fields at \(codecHot), the session's at \(sessionHot)")
        for o in codecHot + sessionHot { #expect(hot.contains(o), "a hot field at \(o), outside \(hot)") }
        let last = withUnsafeMutablePointer(to: &session.turnFanOutStartNanoseconds) { offset($0) }
        #expect(last >= hot.upperBound, "turnFanOutStartNanoseconds at \(last), inside the hot run")
    }

    @Test("heap per idle WebSocket under the bound", arguments: backends)
    func heapPerIdleWebSocket(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1, configure: { c in
            c.webSocket.perMessageDeflate = false
            c.io.idleTimeoutMilliseconds = 600_000
        }, worker: { _ in DefaultWorkerHandler() })
        defer { server.stop() }
        let total = Self.warmUp + Self.connections
        // Everything the client side keeps is allocated before the measurement.
        var fds = [Int32](repeating: -1, count: total)
        defer { for fd in fds where fd >= 0 { Glibc.close(fd) } }
        let request = Array("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8)
        let response = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 8)
        defer { response.deallocate() }

        for i in 0..<Self.warmUp { fds[i] = try openWebSocket(port: server.port, request, response) }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { server.metric("switchboard_ws_open") == Self.warmUp })
        let before = Int(sb_malloc_in_use())
        for i in Self.warmUp..<total { fds[i] = try openWebSocket(port: server.port, request, response) }
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_ws_open") == total })
        let after = Int(sb_malloc_in_use())
        let perConnection = Double(after - before) / Double(Self.connections)
        print("\(backend): \(perConnection) heap bytes per idle WebSocket (\(Self.connections) held, bound \(Self.maxHeapBytesPerConnection))")
        #expect(perConnection <= Self.maxHeapBytesPerConnection, "\(backend): \(perConnection) bytes per idle WebSocket")
        // A figure near zero would mean the sockets were not sessions (the test measured nothing).
        #expect(perConnection >= 100, "\(backend): \(perConnection) bytes per idle WebSocket")
    }

    /// A blocking upgrade on a new socket; returns its descriptor once the whole 101 arrived.
    /// Allocates nothing on the heap (the caller's `request` and `response` are reused).
    private func openWebSocket(port: Int, _ request: [UInt8], _ response: UnsafeMutableRawPointer) throws -> Int32 {
        let fd = try connectLoopback(port: port)
        let sent = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        try #require(sent == request.count)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var filled = 0
        // 101 with Upgrade, Connection and Sec-WebSocket-Accept: ends with the blank line.
        while true {
            let n = recv(fd, response + filled, 1024 - filled, 0)
            // A socket with SO_RCVTIMEO is not restarted after a signal handler (signal(7)): a
            // signal another thread of the test process takes makes this recv fail with EINTR.
            if n < 0 && errno == EINTR { continue }
            try #require(n > 0, "upgrade response: recv \(n), errno \(errno)")
            filled += n
            let bytes = UnsafeRawBufferPointer(start: response, count: filled)
            if filled >= 4 && bytes[filled - 4] == 13 && bytes[filled - 3] == 10 && bytes[filled - 2] == 13 && bytes[filled - 1] == 10 { break }
        }
        let head = UnsafeRawBufferPointer(start: response, count: 12)
        try #require(head.elementsEqual("HTTP/1.1 101".utf8), "not a 101")
        return fd
    }
}
