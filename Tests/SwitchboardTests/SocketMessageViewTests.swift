@testable import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import SwitchboardWebSocket
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a view handler saw of one message, copied during the call.
struct SeenView: Equatable {
    var isText: Bool
    var bytes: [UInt8]
    var count: Int
    var message: SocketMessage
    var text: String?
    var token: [UInt8]?
    /// Whether the handler's send (`.queued`) or publish (`.accepted`) of the view succeeded.
    var forwarded: Bool
    /// Whether the view lent the shard's bytes rather than wrapping a value.
    var lent: Bool = false
}

/// Records what the view handlers saw, across shard threads.
final class ViewRecorder: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var _seen: [SeenView] = []
    private var _values: [SocketMessage] = []
    init() { pthread_mutex_init(&lock, nil) }
    func saw(_ view: SeenView) { pthread_mutex_lock(&lock); _seen.append(view); pthread_mutex_unlock(&lock) }
    func sawValue(_ message: SocketMessage) { pthread_mutex_lock(&lock); _values.append(message); pthread_mutex_unlock(&lock) }
    var seen: [SeenView] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _seen }
    var values: [SocketMessage] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _values }
}

/// Implements only the view method: `/echo` sends the view back, `/pub` (token: the channel)
/// publishes it to the channel every `/pub` socket joins.
final class ViewWorker: WorkerHandler {
    let context: ShardContext
    let recorder: ViewRecorder
    static let channel = ChannelName("views")
    init(_ context: ShardContext, _ recorder: ViewRecorder) {
        self.context = context
        self.recorder = recorder
    }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        if request.path == "/pub" {
            _ = context.subscribe(socketId, Self.channel)
            return .accept(token: Array("pub".utf8))
        }
        return .accept()
    }

    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        let bytes = message.withUnsafeBytes { Array($0) }
        let forwarded: Bool
        if token == nil {
            forwarded = context.send(socketId, message) == .queued
        } else if case .accepted = context.publish(Self.channel, message) {
            forwarded = true
        } else {
            forwarded = false
        }
        recorder.saw(SeenView(isText: message.isText, bytes: bytes, count: message.count, message: message.message,
                              text: message.text, token: token, forwarded: forwarded, lent: message.isLent))
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        // The broker calls the view method; this one only through the view's default.
        recorder.sawValue(message)
    }
}

/// Implements only the value method (as every handler before the view one): the view
/// method's default hands it each message.
final class ValueWorker: WorkerHandler {
    let context: ShardContext
    let recorder: ViewRecorder
    init(_ context: ShardContext, _ recorder: ViewRecorder) {
        self.context = context
        self.recorder = recorder
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        recorder.sawValue(message)
        context.send(socketId, message)
    }
}

/// The exact bytes of an unmasked server frame carrying `payload`.
func serverFrame(_ opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var head: [UInt8] = [0x80 | opcode]
    if payload.count < 126 {
        head.append(UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        head += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        head.append(127)
        for shift in stride(from: 56, through: 0, by: -8) { head.append(UInt8(truncatingIfNeeded: payload.count >> shift)) }
    }
    return head + payload
}

extension TestClient {
    /// Reads exactly `count` bytes from the socket (what the server sent, byte for byte).
    func readBytes(_ count: Int) throws -> [UInt8] {
        try fill(atLeast: count)
        let bytes = Array(buffered.prefix(count))
        removeBuffered(count)
        return bytes
    }
}

/// Issue 16 item 3: `handleSocketMessage(_: borrowing SocketMessageView, ...)` lends a message's
/// bytes to the handler, which sends or publishes them without a `String` or array; a handler
/// implementing only the value method still gets every message, through the view's default.
@Suite("SocketMessageView: messages lent to the handler, over real sockets", .serialized)
struct SocketMessageViewTests {
    static let multibyte = "héllo wörld € 𝄞"

    func server(_ backend: IOBackendKind, _ recorder: ViewRecorder, shards: Int = 1,
                value: Bool = false) throws -> ServerFixture {
        try ServerFixture(backend: backend, shards: shards, configure: { $0.webSocket.perMessageDeflate = false },
                          worker: { value ? ValueWorker($0, recorder) as WorkerHandler : ViewWorker($0, recorder) })
    }

    @Test("a view sent back: the exact frame, for text, binary, multibyte, fragmented, empty, batched messages and one behind a ping",
          arguments: backends)
    func echoExactBytes(backend: IOBackendKind) throws {
        let recorder = ViewRecorder()
        let server = try server(backend, recorder)
        defer { server.stop() }
        let c = try server.client()
        #expect(try c.upgrade(path: "/echo").status == 101)
        let binary = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try c.sendText("hello")
        #expect(try c.readBytes(7) == serverFrame(1, Array("hello".utf8)))
        try c.sendFrame(opcode: 2, payload: binary)
        #expect(try c.readBytes(304) == serverFrame(2, binary))
        try c.sendText(Self.multibyte)
        let multibyte = Array(Self.multibyte.utf8)
        #expect(try c.readBytes(2 + multibyte.count) == serverFrame(1, multibyte))
        // Assembled from fragments (its bytes lent from the array the codec assembled them in: no
        // `String` is made), and an empty message (no bytes to lend: a value the view wraps).
        try c.sendFrame(opcode: 1, payload: Array("frag".utf8), fin: false)
        try c.sendFrame(opcode: 0, payload: Array("ment €".utf8))
        let fragment = Array("fragment €".utf8)
        #expect(try c.readBytes(2 + fragment.count) == serverFrame(1, fragment))
        try c.sendFrame(opcode: 2, payload: [])
        #expect(try c.readBytes(2) == [0x82, 0x00])
        // An empty text message: assembled (no payload to be whole), lent with no bytes.
        try c.sendFrame(opcode: 1, payload: [])
        #expect(try c.readBytes(2) == [0x81, 0x00])
        // Three messages in one write: each is lent in turn, the buffer reused in between.
        try c.send(TestClient.frame(opcode: 1, payload: Array("one".utf8)) + TestClient.frame(opcode: 2, payload: [1, 2])
                   + TestClient.frame(opcode: 1, payload: Array("three".utf8)))
        #expect(try c.readBytes(5 + 4 + 7) == serverFrame(1, Array("one".utf8)) + serverFrame(2, [1, 2]) + serverFrame(1, Array("three".utf8)))
        // Behind a ping in the same write: the codec's `.inScratch` event, acted on after the pong.
        try c.send(TestClient.frame(opcode: 9, payload: [7]) + TestClient.frame(opcode: 1, payload: Array("after a ping".utf8)))
        #expect(try c.readBytes(3 + 14) == serverFrame(10, [7]) + serverFrame(1, Array("after a ping".utf8)))

        let seen = recorder.seen
        let expected: [(Bool, [UInt8])] = [
            (true, Array("hello".utf8)), (false, binary), (true, multibyte), (true, Array("fragment €".utf8)), (false, []), (true, []),
            (true, Array("one".utf8)), (false, [1, 2]), (true, Array("three".utf8)), (true, Array("after a ping".utf8)),
        ]
        #expect(seen.count == expected.count)
        #expect(seen.map(\.lent) == [true, true, true, true, false, true, true, true, true, true])
        for (view, (isText, bytes)) in zip(seen, expected) {
            #expect(view.isText == isText && view.bytes == bytes && view.count == bytes.count && view.token == nil && view.forwarded)
            // The value the view makes, and its text, are the same message.
            #expect(view.message == (isText ? .text(String(decoding: bytes, as: UTF8.self)) : .binary(bytes)))
            #expect(view.text == (isText ? String(decoding: bytes, as: UTF8.self) : nil))
        }
        // The broker called the view method only: the value method was never reached.
        #expect(recorder.values.isEmpty)
    }

    @Test("invalid UTF-8 closes with 1007 before the handler sees any of it", arguments: backends)
    func invalidTextNeverLent(backend: IOBackendKind) throws {
        let recorder = ViewRecorder()
        let server = try server(backend, recorder)
        defer { server.stop() }
        let rows: [([UInt8], String)] = [
            (Array("abc".utf8) + [0xC0, 0x80] + Array("defghijk".utf8), "invalid UTF-8 in text message"),
            (Array("euro ".utf8) + [0xE2, 0x82], "text message ends inside a UTF-8 sequence"),
            (Array("xy".utf8) + [0xED, 0xA0, 0x80], "invalid UTF-8 in text message"),
        ]
        for (payload, reason) in rows {
            let c = try server.client()
            #expect(try c.upgrade(path: "/echo").status == 101)
            try c.sendFrame(opcode: 1, payload: payload)
            #expect(try c.readBytes(4 + reason.utf8.count) == serverFrame(8, [0x03, 0xEF] + Array(reason.utf8)))
            #expect(c.isClosedByServer())
        }
        #expect(recorder.seen.isEmpty && recorder.values.isEmpty)
        #expect(server.metric("switchboard_ws_protocol_errors_total") == 3)
    }

    @Test("a published view: every subscriber gets the exact frame, on one shard or across two",
          arguments: backends, [1, 2])
    func publishExactBytes(backend: IOBackendKind, shards: Int) throws {
        let recorder = ViewRecorder()
        let server = try server(backend, recorder, shards: shards)
        defer { server.stop() }
        // Enough subscribers that both shards have some (connections are spread over the shards).
        let clients = try (0..<4).map { _ in try server.client() }
        for c in clients { #expect(try c.upgrade(path: "/pub").status == 101) }
        let binary = [UInt8](0...255)
        try clients[0].sendText(Self.multibyte)
        try clients[1].sendFrame(opcode: 2, payload: binary)
        let multibyte = Array(Self.multibyte.utf8)
        for c in clients {
            // Two publishers: the channel's order decides which comes first, the same for everyone.
            let frames = [try c.readFrame(), try c.readFrame()]
            #expect(frames.contains(TestFrame(fin: true, rsv1: false, opcode: 1, payload: multibyte)))
            #expect(frames.contains(TestFrame(fin: true, rsv1: false, opcode: 2, payload: binary)))
        }
        let seen = recorder.seen
        #expect(seen.count == 2 && seen.allSatisfy { $0.token == Array("pub".utf8) && $0.forwarded })
        #expect(recorder.values.isEmpty)
    }

    @Test("a handler with only the value method gets every message, as before", arguments: backends)
    func valueHandlerUnchanged(backend: IOBackendKind) throws {
        let recorder = ViewRecorder()
        let server = try server(backend, recorder, value: true)
        defer { server.stop() }
        let c = try server.client()
        #expect(try c.upgrade(path: "/echo").status == 101)
        let binary = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        try c.sendText(Self.multibyte)
        try c.sendFrame(opcode: 2, payload: binary)
        try c.sendFrame(opcode: 1, payload: Array("frag".utf8), fin: false)
        try c.sendFrame(opcode: 0, payload: Array("ment".utf8))
        let multibyte = Array(Self.multibyte.utf8)
        #expect(try c.readBytes(2 + multibyte.count + 4 + binary.count + 2 + 8)
                == serverFrame(1, multibyte) + serverFrame(2, binary) + serverFrame(1, Array("fragment".utf8)))
        #expect(recorder.values == [.text(Self.multibyte), .binary(binary), .text("fragment")])
        #expect(recorder.seen.isEmpty)
    }

    @Test("with permessage-deflate, a view sent back is compressed, lent or a value", arguments: backends)
    func deflateEcho(backend: IOBackendKind) throws {
        let recorder = ViewRecorder()
        let server = try ServerFixture(backend: backend, shards: 1, configure: { $0.webSocket.perMessageDeflate = true },
                                       worker: { ViewWorker($0, recorder) })
        defer { server.stop() }
        let c = try server.client()
        let r = try c.upgrade(path: "/echo", headers: "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        #expect(r.header("Sec-WebSocket-Extensions") == "permessage-deflate; server_no_context_takeover")
        var client = WebSocketConnection(role: .client, deflate: PerMessageDeflateParameters(serverNoContextTakeover: true))
        let sample = Array(String(repeating: "a view, compressed on the way back ", count: 8).utf8)
        // Sent uncompressed (whole in one read: lent), then compressed (inflated: a value).
        let plain = TestClient.frame(opcode: 1, payload: sample)
        let compressed = sample.withUnsafeBytes { client.encodeMessage($0, opcode: .text) }
        #expect(compressed[0] & 0x40 != 0, "the client compressed it")
        for (name, frame) in [("uncompressed", plain), ("compressed", compressed)] {
            try c.send(frame)
            let echo = try c.readFrame()
            #expect(echo.opcode == 1 && echo.rsv1, "\(name): \(echo)")
            var events: [WebSocketEvent] = []
            TestClient.frame(opcode: echo.opcode, payload: echo.payload, rsv1: echo.rsv1, masked: false).withUnsafeBytes {
                client.receive($0) { events.append($0) }
            }
            guard events.count == 1, case .text(let text) = events[0] else {
                Issue.record("\(name): \(events)")
                continue
            }
            #expect(Array(text.utf8) == sample, "\(name)")
        }
        #expect(recorder.seen.map(\.bytes) == [sample, sample] && recorder.seen.allSatisfy(\.forwarded))
    }

    @Test("a view of a value: its bytes, count, text and value")
    func viewOfValue() {
        let text = SocketMessageView(.text(Self.multibyte))
        #expect(text.isText && text.count == Self.multibyte.utf8.count && text.text == Self.multibyte)
        #expect(text.withUnsafeBytes { Array($0) } == Array(Self.multibyte.utf8))
        #expect(text.message == .text(Self.multibyte))
        let binary = SocketMessageView(.binary([0, 0xFF, 7]))
        #expect(!binary.isText && binary.count == 3 && binary.text == nil && binary.message == .binary([0, 0xFF, 7]))
        #expect(binary.withUnsafeBytes { Array($0) } == [0, 0xFF, 7])
    }
}
