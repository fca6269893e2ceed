import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Records what the WebSocket worker saw, across shard threads.
final class WSRecorder: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var _messages: [(SocketID, SocketMessage, [UInt8]?)] = []
    private var _closes: [(SocketID, [UInt8]?)] = []
    private var _ids: [SocketID] = []
    init() { pthread_mutex_init(&lock, nil) }
    func message(_ id: SocketID, _ m: SocketMessage, _ t: [UInt8]?) { pthread_mutex_lock(&lock); _messages.append((id, m, t)); pthread_mutex_unlock(&lock) }
    func close(_ id: SocketID, _ t: [UInt8]?) { pthread_mutex_lock(&lock); _closes.append((id, t)); pthread_mutex_unlock(&lock) }
    func upgraded(_ id: SocketID) { pthread_mutex_lock(&lock); _ids.append(id); pthread_mutex_unlock(&lock) }
    var messages: [(SocketID, SocketMessage, [UInt8]?)] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _messages }
    var closes: [(SocketID, [UInt8]?)] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _closes }
    var ids: [SocketID] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _ids }
}

final class WSTestWorker: WorkerHandler {
    let context: ShardContext
    let recorder: WSRecorder
    init(_ context: ShardContext, _ recorder: WSRecorder) {
        self.context = context
        self.recorder = recorder
    }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        if request.path == "/refuse" {
            return .reject(.text("no\n", status: .forbidden))
        }
        recorder.upgraded(socketId)
        return .accept(token: Array("tok\(request.path)".utf8), subprotocol: "chat")
    }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        recorder.message(socketId, message, token)
        if case .text(let t) = message {
            if t == "close-me" { context.close(socketId, code: .application(4000), reason: "bye"); return }
            if t.hasPrefix("flood:") {
                let n = Int(t.dropFirst(6)) ?? 0
                let chunk = [UInt8](repeating: 0x61, count: 65_536)
                for _ in 0..<n { context.send(socketId, .binary(chunk)) }
                return
            }
            if t.hasPrefix("token:") { context.setToken(socketId, Array(t.dropFirst(6).utf8)); return }
        }
        context.send(socketId, message)
    }
    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        recorder.close(socketId, token)
    }
}

func wsServer(_ backend: IOBackendKind, _ recorder: WSRecorder, configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> ServerFixture {
    try ServerFixture(backend: backend, configure: { c in
        c.webSocket.perMessageDeflate = false
        configure(&c)
    }, worker: { WSTestWorker($0, recorder) })
}

@Suite("WebSocket over real sockets", .serialized)
struct WebSocketServerTests {
    @Test("upgrade: exact 101, echo text and binary, token, close reported once", arguments: backends)
    func echo(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder)
        defer { server.stop() }
        let c = try server.client()
        let r = try c.upgrade(path: "/room", headers: "Sec-WebSocket-Protocol: other, chat\r\n")
        #expect(r.text == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
        try c.sendText("hello")
        #expect(try c.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array("hello".utf8)))
        let blob = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        try c.sendFrame(opcode: 2, payload: blob)
        #expect(try c.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 2, payload: blob))
        // Fragmented with an interleaved ping: the pong comes first, then the whole message.
        try c.sendFrame(opcode: 1, payload: Array("frag".utf8), fin: false)
        try c.sendFrame(opcode: 9, payload: Array("p".utf8))
        try c.sendFrame(opcode: 0, payload: Array("ment".utf8), fin: true)
        #expect(try c.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 10, payload: Array("p".utf8)))
        #expect(try c.readFrame().text == "fragment")
        #expect(recorder.messages.allSatisfy { $0.2 == Array("tok/room".utf8) })
        try c.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        #expect(try c.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 8, payload: [0x03, 0xE8]))
        #expect(c.isClosedByServer())
        #expect(waitUntil { recorder.closes.count == 1 })
        // "Once": a second report could only come later from the shard; stopping joins the
        // shard threads, so every report the server will ever make has been made.
        server.stop()
        #expect(recorder.closes.count == 1)
        #expect(recorder.closes[0].0 == recorder.ids[0])
        #expect(recorder.closes[0].1 == Array("tok/room".utf8))
    }

    @Test("handshake refusals: handler 403, bad key 400, version 426, websocket off path 404", arguments: backends)
    func refusals(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder) { $0.webSocket.paths = ["/ws", "/refuse"] }
        defer { server.stop() }
        let a = try server.client()
        #expect(try a.upgrade(path: "/refuse").status == 403)
        #expect(a.isClosedByServer())
        let b = try server.client()
        try b.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
        #expect(try b.readResponse().status == 400)
        let c = try server.client()
        try c.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
        let v = try c.readResponse()
        #expect(v.status == 426)
        #expect(v.header("Sec-WebSocket-Version") == "13")
        let d = try server.client()
        #expect(try d.upgrade(path: "/elsewhere").status == 404)  // not a WebSocket path: plain HTTP
        #expect(recorder.closes.isEmpty)
        #expect(server.metric("switchboard_ws_upgrades_refused_total") == 3)
    }

    @Test("protocol errors close with the right code; bystanders unaffected", arguments: backends)
    func protocolErrors(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder) { $0.webSocket.maxMessageBytes = 1000 }
        defer { server.stop() }
        let bystander = try server.client()
        _ = try bystander.upgrade()
        let rows: [(String, [UInt8], UInt16)] = [
            ("unmasked frame", TestClient.frame(opcode: 1, payload: Array("x".utf8), masked: false), 1002),
            ("reserved opcode", TestClient.frame(opcode: 3, payload: []), 1002),
            ("RSV1 without deflate", TestClient.frame(opcode: 1, payload: Array("x".utf8), rsv1: true), 1002),
            ("invalid UTF-8", TestClient.frame(opcode: 1, payload: [0xC0, 0x80]), 1007),
            ("message over limit", TestClient.frame(opcode: 2, payload: [UInt8](repeating: 1, count: 1001)), 1009),
            ("continuation without start", TestClient.frame(opcode: 0, payload: Array("x".utf8)), 1002),
            ("fragmented ping", TestClient.frame(opcode: 9, payload: [], fin: false), 1002),
        ]
        for (name, bytes, code) in rows {
            let c = try server.client()
            _ = try c.upgrade()
            try c.send(bytes)
            let f = try c.readFrame()
            #expect(f.opcode == 8 && f.closeCode == code, "\(name): \(f)")
            #expect(c.isClosedByServer(), "\(name)")
            try bystander.sendText(name)
            #expect(try bystander.readFrame().text == name)
        }
        #expect(waitUntil { recorder.closes.count == rows.count })
        #expect(server.metric("switchboard_ws_protocol_errors_total") == rows.count)
        #expect(server.metric("switchboard_ws_too_big_total") == 1)
    }

    @Test("server-initiated close handshake; send from another thread; stale ids ignored", arguments: backends)
    func serverClose(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder)
        defer { server.stop() }
        let c = try server.client()
        _ = try c.upgrade()
        #expect(waitUntil { recorder.ids.count == 1 })
        let id = recorder.ids[0]
        #expect(server.broker.send(id, .text("from outside")) == .queued)
        #expect(try c.readFrame().text == "from outside")
        try c.sendText("token:new")
        try c.sendText("after")
        #expect(try c.readFrame().text == "after")
        #expect(recorder.messages.last?.2 == Array("new".utf8))
        try c.sendText("close-me")
        let f = try c.readFrame()
        #expect(f.opcode == 8 && f.closeCode == 4000 && f.payload.dropFirst(2) == Array("bye".utf8)[...])
        try c.sendFrame(opcode: 8, payload: [0x0F, 0xA0])
        #expect(c.isClosedByServer())
        #expect(waitUntil { recorder.closes.count == 1 })
        // The id is stale now: sends are dropped, nothing reaches the next tenant of the slot.
        let d = try server.client(timeoutMilliseconds: 300)
        _ = try d.upgrade()
        server.broker.send(id, .text("stale"))
        #expect(throws: TestClient.Failure.self) { try d.readFrame() }
    }

    @Test("idle WebSocket gets a ping; no answer closes it", arguments: backends)
    func keepAlivePing(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder) { $0.io.idleTimeoutMilliseconds = 150 }
        defer { server.stop() }
        let c = try server.client()
        _ = try c.upgrade()
        let ping = try c.readFrame()
        #expect(ping.opcode == 9)
        try c.sendFrame(opcode: 10, payload: ping.payload)
        #expect(try c.readFrame().opcode == 9)  // answered: still open, pinged again later
        // Stop answering: closed after the next idle period.
        #expect(c.isClosedByServer())
        #expect(server.metric("switchboard_ws_ping_timeouts_total") >= 1)
        #expect(waitUntil { recorder.closes.count == 1 })
    }

    @Test("slow consumer: close policy cuts it, drop policy counts; others unaffected", arguments: backends)
    func slowConsumer(backend: IOBackendKind) throws {
        for policy in [SlowConsumerPolicy.close, .drop] {
            let recorder = WSRecorder()
            let server = try wsServer(backend, recorder) {
                $0.io.maxSendQueueBytes = 512 * 1024
                $0.webSocket.slowConsumerPolicy = policy
            }
            defer { server.stop() }
            let slow = try server.client()
            var rcv: Int32 = 4096
            setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
            _ = try slow.upgrade()
            let other = try server.client()
            _ = try other.upgrade()
            try slow.sendText("flood:200")  // 12.5 MiB toward a reader that does not read
            switch policy {
            case .close:
                #expect(waitUntil { server.metric("switchboard_ws_slow_consumers_closed_total") == 1 })
                #expect(waitUntil { recorder.closes.count == 1 })
            case .drop:
                #expect(waitUntil { server.metric("switchboard_ws_messages_dropped_total") > 0 })
                #expect(recorder.closes.isEmpty)
            }
            try other.sendText("fine")
            #expect(try other.readFrame().text == "fine")
        }
    }

    @Test("shutdown sends 1001 to every WebSocket", arguments: backends)
    func shutdownGoingAway(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder)
        let c = try server.client()
        _ = try c.upgrade()
        #expect(waitUntil { recorder.ids.count == 1 })
        let broker = server.broker
        let stopper = OSThread.spawn(name: "stopper") { broker.shutdown(graceMilliseconds: 2000) }!
        let f = try c.readFrame()
        #expect(f.opcode == 8 && f.closeCode == 1001)
        try c.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        #expect(c.isClosedByServer())
        stopper.join()
        #expect(recorder.closes.count == 1)
    }
}
