import Switchboard
import SwitchboardIO
import SwitchboardWebSocket
import SwitchboardTestSupport
import Testing

/// Issue 17: `ws_deflate_context_takeover` (off by default). Off, the server answers every
/// permessage-deflate offer with `server_no_context_takeover` and frees its compressor after
/// each message, and frees its decompressor too when the client offered
/// `client_no_context_takeover`; otherwise the client may refer back into its previous
/// messages, so the decompressor's window stays.
@Suite("permessage-deflate context takeover (ws_deflate_context_takeover)", .serialized)
struct DeflateContextTakeoverTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var backend: IOBackendKind
        /// The server's `ws_deflate_context_takeover`.
        var takeover: Bool
        /// The client offers `client_no_context_takeover`.
        var clientNoTakeover: Bool

        var offer: String {
            "permessage-deflate" + (clientNoTakeover ? "; client_no_context_takeover" : "")
        }
        /// The exact `Sec-WebSocket-Extensions` answer.
        var answer: String {
            "permessage-deflate" + (takeover ? "" : "; server_no_context_takeover")
                + (clientNoTakeover ? "; client_no_context_takeover" : "")
        }
        var parameters: PerMessageDeflateParameters {
            PerMessageDeflateParameters(serverNoContextTakeover: !takeover, clientNoContextTakeover: clientNoTakeover)
        }
        var testDescription: String {
            "\(backend), ws_deflate_context_takeover \(takeover), client_no_context_takeover offered \(clientNoTakeover)"
        }
    }

    static let cases: [Case] = backends.flatMap { backend in
        [false, true].flatMap { takeover in
            [false, true].map { Case(backend: backend, takeover: takeover, clientNoTakeover: $0) }
        }
    }

    static func server(_ backend: IOBackendKind, takeover: Bool?) throws -> ServerFixture {
        try boundsServer(backend) { c in
            c.webSocket.perMessageDeflate = true
            if let takeover { c.webSocket.deflateContextTakeover = takeover }
        }
    }

    /// Text that compresses, ~1 KB: the echo of the second copy refers back into the first
    /// when (and only when) the compressor keeps its window.
    static let sample = Array(String(repeating: "Hello, permessage-deflate context takeover! ", count: 24).utf8)

    @Test("the default is off: the answer adds server_no_context_takeover unasked", arguments: backends)
    func defaultIsOff(backend: IOBackendKind) throws {
        #expect(BrokerConfiguration().webSocket.deflateContextTakeover == false)
        let server = try Self.server(backend, takeover: nil)
        defer { server.stop() }
        let c = try server.client()
        let r = try c.upgrade(headers: "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        #expect(r.status == 101)
        #expect(r.header("Sec-WebSocket-Extensions") == "permessage-deflate; server_no_context_takeover")
    }

    @Test("the key is read from a configuration file and refuses anything but a boolean")
    func configurationKey() throws {
        var c = BrokerConfiguration()
        try c.apply(configurationText: "ws_deflate_context_takeover = true\n")
        #expect(c.webSocket.deflateContextTakeover)
        #expect(c.value(forKey: "ws_deflate_context_takeover") == "true")
        #expect(throws: ConfigurationError.self) { try c.apply(configurationText: "ws_deflate_context_takeover = sometimes\n") }
    }

    @Test("exact answer; three identical messages round-trip compressed both ways", arguments: cases)
    func roundTrip(_ t: Case) throws {
        let server = try Self.server(t.backend, takeover: t.takeover)
        defer { server.stop() }
        let c = try server.client()
        let r = try c.upgrade(headers: "Sec-WebSocket-Extensions: \(t.offer)\r\n")
        #expect(r.status == 101)
        #expect(r.header("Sec-WebSocket-Extensions") == t.answer)
        // The client end: compresses with its window kept unless it offered
        // client_no_context_takeover, so the server's decompressor must keep its window then.
        var client = WebSocketConnection(role: .client, deflate: t.parameters)
        var sentSizes: [Int] = [], echoSizes: [Int] = []
        for round in 0..<3 {
            let frame = Self.sample.withUnsafeBytes { client.encodeMessage($0, opcode: .text) }
            sentSizes.append(frame.count)
            try c.send(frame)
            let echo = try c.readFrame()
            #expect(echo.opcode == 1 && echo.rsv1, "round \(round): \(echo)")
            echoSizes.append(echo.payload.count)
            var events: [WebSocketEvent] = []
            TestClient.frame(opcode: echo.opcode, payload: echo.payload, rsv1: echo.rsv1, masked: false).withUnsafeBytes {
                client.receive($0) { events.append($0) }
            }
            guard events.count == 1, case .text(let text) = events[0] else {
                Issue.record("round \(round): \(events)")
                return
            }
            #expect(Array(text.utf8) == Self.sample, "round \(round)")
        }
        // Our compressor's window is kept exactly when takeover is on; the client's likewise.
        if t.takeover {
            #expect(echoSizes[1] < echoSizes[0] / 2, "echo sizes \(echoSizes)")
        } else {
            #expect(echoSizes[1] == echoSizes[0] && echoSizes[2] == echoSizes[0], "echo sizes \(echoSizes)")
        }
        if t.clientNoTakeover {
            #expect(sentSizes[1] == sentSizes[0], "sent sizes \(sentSizes)")
        } else {
            #expect(sentSizes[1] < sentSizes[0] / 2, "sent sizes \(sentSizes)")
        }
    }

    /// 64 bytes as one raw-deflate stored block: a valid compressed message needing no client
    /// compressor (the client side of this process then holds no zlib state).
    static let storedMessage: [UInt8] = [0x00, 0x40, 0x00, 0xBF, 0xFF] + [UInt8](repeating: 0x61, count: 64)

    /// Heap in use per connection (malloc, server and client side of this process) once each of
    /// `count` sockets got one message each way and went idle. `offer` nil: no deflate.
    static func heapPerIdleConnection(_ backend: IOBackendKind, takeover: Bool, offer: String?, count: Int = 200) throws -> Int {
        let server = try Self.server(backend, takeover: takeover)
        defer { server.stop() }
        var clients: [TestClient] = []
        clients.reserveCapacity(count)
        // One socket first: what the first connection on a shard makes once is not per-socket.
        let warm = try server.client()
        #expect(try warm.upgrade().status == 101)
        try warm.sendFrame(opcode: 2, payload: [UInt8](repeating: 0x61, count: 64))
        _ = try warm.readFrame()
        let before = mallocInUseBytes()
        for _ in 0..<count {
            let c = try server.client()
            let r = try c.upgrade(headers: offer.map { "Sec-WebSocket-Extensions: \($0)\r\n" } ?? "")
            #expect(r.status == 101)
            #expect((r.header("Sec-WebSocket-Extensions") != nil) == (offer != nil))
            if offer != nil {
                try c.sendFrame(opcode: 2, payload: Self.storedMessage, rsv1: true)
            } else {
                try c.sendFrame(opcode: 2, payload: [UInt8](repeating: 0x61, count: 64))
            }
            // The echo came back: the server made (and, without takeover, freed) its streams.
            let f = try c.readFrame()
            #expect(f.opcode == 2 && f.rsv1 == (offer != nil))
            clients.append(c)
        }
        return (mallocInUseBytes() - before) / count
    }

    @Test("idle compressed sockets: no zlib state without takeover, the inflater's window only if the client keeps its own", arguments: backends)
    func idleHeapPerConnection(backend: IOBackendKind) throws {
        let deflater = WebSocketConnection.deflaterBytes(windowBits: 15, memoryLevel: 8)
        let inflater = WebSocketConnection.inflaterBytes(windowBits: 15)
        // malloc's figure is the whole process's: suites running in parallel with this one can
        // move it. Up to three measurements; the bounds must hold for one of them (a real
        // regression breaks all three: they are 85-270 KiB per socket away from the bounds).
        var problems: [String] = []
        for attempt in 1...3 {
            let plain = try Self.heapPerIdleConnection(backend, takeover: false, offer: nil)
            let offBoth = try Self.heapPerIdleConnection(backend, takeover: false, offer: "permessage-deflate; client_no_context_takeover")
            let offServer = try Self.heapPerIdleConnection(backend, takeover: false, offer: "permessage-deflate")
            let on = try Self.heapPerIdleConnection(backend, takeover: true, offer: "permessage-deflate")
            print("heap per idle connection after one message each way (\(backend), 200 sockets, client side included, attempt \(attempt)): plain \(plain) B; takeover off + client_no_context_takeover \(offBoth) B; takeover off \(offServer) B; takeover on \(on) B")
            problems = []
            // No zlib state at all: within 4 KiB of a socket without deflate.
            if offBoth > plain + 4096 { problems.append("off, both no takeover: \(offBoth) vs plain \(plain)") }
            // The decompressor's window and scratch stay (the client's next message may refer back).
            if offServer < plain + 32 * 1024 || offServer > plain + inflater + 4096 { problems.append("off: \(offServer) vs plain \(plain)") }
            // With takeover the compressor stays too: freeing it saves at least 200 KiB per socket.
            if on < offServer + 200 * 1024 { problems.append("on: \(on) vs off \(offServer)") }
            if on > plain + deflater + inflater + 4096 { problems.append("on: \(on) vs charged \(deflater + inflater)") }
            if problems.isEmpty { break }
        }
        #expect(problems.isEmpty, "\(problems)")
    }
}
