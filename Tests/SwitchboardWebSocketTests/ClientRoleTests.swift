import Testing
import SwitchboardHTTP
@testable import SwitchboardWebSocket

/// Feeds `bytes` to `connection` and returns its events.
private func feed(_ bytes: [UInt8], _ connection: inout WebSocketConnection) -> [Event] {
    var events: [Event] = []
    bytes.withUnsafeBytes { connection.receive($0) { events.append(Event($0)) } }
    return events
}

/// The server's response to `request` as bytes, through the real negotiation and writer.
private func serverAnswer(_ request: [UInt8], options: WebSocketHandshakeOptions = .init()) throws -> ([UInt8], PerMessageDeflateParameters?) {
    var parser = HTTPRequestParser()
    var parsed: HTTPRequest?
    request.withUnsafeBytes { bytes in
        if case .request(let r) = parser.parse(bytes).result { parsed = r }
    }
    let head = try #require(parsed, "the client's request parses")
    guard case .accept(let response, let deflate) = WebSocketHandshake.negotiate(head, options: options, subprotocol: "chat") else {
        Issue.record("the server refused the client's request")
        return ([], nil)
    }
    var out: [UInt8] = []
    HTTPResponseWriter.write(response, keepAlive: true, into: &out)
    return (out, deflate)
}

@Suite struct ClientRoleTests {
    @Test func clientRefusesMaskedFramesAndReadsUnmaskedOnes() {
        var client = WebSocketConnection(role: .client)
        #expect(feed(frame(1, Array("hi".utf8), masked: false), &client) == [.text(Array("hi".utf8))])
        let events = feed(frame(1, Array("hi".utf8), masked: true), &client)
        #expect(events.last == .failed(1002))
        // The close frame the client sends on failure is itself masked.
        guard case .write(let close) = events.first else { Issue.record("no close frame: \(events)"); return }
        #expect(close[0] == 0x88 && close[1] & 0x80 != 0)
    }

    @Test func serverStillRefusesUnmaskedFrames() {
        var server = WebSocketConnection()
        #expect(feed(frame(1, Array("hi".utf8), masked: false), &server).last == .failed(1002))
    }

    /// Every frame a client sends is masked with a fresh key, in every length form, and the
    /// server role reads it back exactly; the server's unmasked frames reach the client.
    @Test func clientAndServerRoundTrip() {
        var client = WebSocketConnection(role: .client)
        var server = WebSocketConnection()
        var keys: Set<[UInt8]> = []
        for count in [0, 5, 125, 126, 65_535, 65_536, 200_000] {
            let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let wire = payload.withUnsafeBytes { client.encodeMessage($0, opcode: .binary) }
            #expect(wire[1] & 0x80 != 0, "client frames carry the mask bit")
            let header = WebSocketFrame.headerSize(payloadCount: count, masked: true)
            keys.insert(Array(wire[(header - 4)..<header]))
            if count >= 8 { #expect(Array(wire[header..<(header + 8)]) != Array(payload.prefix(8)), "payload is masked") }
            #expect(feed(wire, &server) == [.binary(payload)])
            let back = payload.withUnsafeBytes { server.encodeMessage($0, opcode: .binary) }
            #expect(back[1] & 0x80 == 0)
            #expect(feed(back, &client) == [.binary(payload)])
        }
        #expect(keys.count == 7, "a fresh key per frame")
    }

    @Test func clientAnswersPingsAndClosesWithMaskedFrames() {
        var client = WebSocketConnection(role: .client)
        var server = WebSocketConnection()
        let ping = Array("ping!".utf8).withUnsafeBytes { WebSocketFrame.encode(opcode: .ping, payload: $0) }
        let events = feed(ping, &client)
        guard case .write(let pong) = events.first else { Issue.record("no pong: \(events)"); return }
        #expect(pong[0] == 0x8A && pong[1] & 0x80 != 0)
        #expect(feed(pong, &server) == [.pong(Array("ping!".utf8))])
        let clientPing = client.encodePing(Array("x".utf8))!
        #expect(feed(clientPing, &server).count == 1)
        let close = client.initiateClose(code: 1000, reason: "bye")
        #expect(close[1] & 0x80 != 0)
        #expect(client.encodePing([]) == nil, "nothing after our close")
        let serverEvents = feed(close, &server)
        #expect(serverEvents.last == .closed(1000, "bye"))
        guard case .write(let reply) = serverEvents.first else { Issue.record("no close reply"); return }
        #expect(feed(reply, &client) == [.closed(1000, "")])
    }

    /// The whole opening handshake, both sides: the client's request goes through the server's
    /// parser and negotiation, the server's response through the client's validator; then
    /// permessage-deflate runs in both directions with the parameters each side derived.
    @Test(arguments: [false, true])
    func fullHandshakeThenDeflateBothWays(offerDeflate: Bool) throws {
        let url = try WebSocketURL.parse("ws://example.com:8080/chat?room=1")
        let handshake = WebSocketClientHandshake(url: url, subprotocols: ["chat", "other"], perMessageDeflate: offerDeflate)
        let request = String(decoding: handshake.request, as: UTF8.self)
        #expect(request.hasPrefix("GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"))
        let (response, serverDeflate) = try serverAnswer(handshake.request)
        let trailing: [UInt8] = [0x81, 0x01, 0x41]  // a frame right behind the head stays for the codec
        guard case .accepted(let headBytes, let clientDeflate, let subprotocol) = (response + trailing).withUnsafeBytes({ handshake.validate($0) }) else {
            Issue.record("the client refused the server's response")
            return
        }
        #expect(headBytes == response.count)
        #expect(subprotocol == "chat")
        #expect((clientDeflate != nil) == offerDeflate)
        #expect(clientDeflate == serverDeflate)
        var client = WebSocketConnection(role: .client, deflate: clientDeflate)
        var server = WebSocketConnection(deflate: serverDeflate)
        let text = Array(String(repeating: "compress me please ", count: 200).utf8)
        for _ in 0..<3 {
            let up = text.withUnsafeBytes { client.encodeMessage($0, opcode: .text) }
            #expect((up[0] & 0x40 != 0) == offerDeflate, "RSV1 only when deflate was agreed")
            #expect(feed(up, &server) == [.text(text)])
            let down = text.withUnsafeBytes { server.encodeMessage($0, opcode: .text) }
            #expect(feed(down, &client) == [.text(text)])
        }
    }

    @Test func clientRefusesBadResponses() throws {
        let url = try WebSocketURL.parse("ws://h/")
        let plain = WebSocketClientHandshake(url: url, key: "dGhlIHNhbXBsZSBub25jZQ==")
        let offering = WebSocketClientHandshake(url: url, key: "dGhlIHNhbXBsZSBub25jZQ==", subprotocols: ["a"], perMessageDeflate: true)
        let base = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        func outcome(_ handshake: WebSocketClientHandshake, _ extra: String) -> WebSocketClientHandshake.Outcome {
            Array((base + extra + "\r\n\r\n").utf8).withUnsafeBytes { handshake.validate($0) }
        }
        for (handshake, extra, fragment) in [
            (plain, "\r\nSec-WebSocket-Extensions: permessage-deflate", "not offered"),
            (plain, "\r\nSec-WebSocket-Protocol: a", "not offered"),
            (offering, "\r\nSec-WebSocket-Protocol: b", "not offered"),
            (offering, "\r\nSec-WebSocket-Extensions: x-other", "not offered"),
            (offering, "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits", "bad permessage-deflate"),
            (offering, "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16", "bad permessage-deflate"),
            (offering, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Accept"),
        ] as [(WebSocketClientHandshake, String, String)] {
            guard case .rejected(let why) = outcome(handshake, extra) else { Issue.record("accepted: \(extra)"); continue }
            #expect(why.contains(fragment), "\(extra): \(why)")
        }
        let agreed = "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        #expect(outcome(offering, agreed)
            == .accepted(headBytes: (base + agreed).utf8.count + 4, deflate: PerMessageDeflateParameters(
                serverNoContextTakeover: true, clientMaxWindowBits: 10), subprotocol: nil))
        let huge = [UInt8](repeating: 0x41, count: WebSocketClientHandshake.maxResponseHeadBytes + 1)
        guard case .rejected = huge.withUnsafeBytes({ plain.validate($0) }) else { Issue.record("endless head accepted"); return }
    }

    @Test func keysAreBase64Of16RandomBytes() {
        #expect(Base64.encode([0x14, 0xFB, 0x9C, 0x03, 0xD9, 0x7E]) == "FPucA9l+")
        #expect(Base64.encode([1]) == "AQ==" && Base64.encode([1, 2]) == "AQI=")
        let a = WebSocketClientHandshake.makeKey(), b = WebSocketClientHandshake.makeKey()
        #expect(a != b && WebSocketHandshake.isValidKey(a) && WebSocketHandshake.isValidKey(b))
    }

    @Test func urlParsing() throws {
        #expect(try WebSocketURL.parse("ws://127.0.0.1:8080/broker?x=1#frag") == WebSocketURL(host: "127.0.0.1", port: 8080, resource: "/broker?x=1"))
        #expect(try WebSocketURL.parse("WSS://[::1]/p").hostHeader == "[::1]")
        #expect(try WebSocketURL.parse("ws://h:81").hostHeader == "h:81")
        for bad in ["http://x/", "ws://", "ws://:80/", "ws://h:0/", "ws://h:99999/", "ws://[::1/", "ws://u@h/", "ws://::1/"] {
            #expect(throws: WebSocketURL.ParseError.self, "\(bad)") { try WebSocketURL.parse(bad) }
        }
    }
}
