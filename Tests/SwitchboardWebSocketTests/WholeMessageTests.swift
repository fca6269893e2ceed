import Testing
@testable import SwitchboardWebSocket

/// Issue 16 item 3: a message whose single frame is whole in the buffer being read goes from
/// that buffer to the owner (unmasked straight into a text message's `String`), not through the
/// assembly buffer. Everything observable must be what the assembling path gives: events,
/// close frames and reasons, counters, `receive`'s offsets.
@Suite("Codec: whole messages straight from the receive buffer")
struct WholeMessageTests {
    static let multibyte = Array(String(repeating: "héllo wörld € 𝄞 ", count: 9).utf8)

    /// Streams whose first frame or frames can take the whole-message path when fed at once.
    static let streams: [(String, [UInt8])] = [
        ("short text (a small string)", text("hi")),
        ("empty text", text("")),
        ("text of 15 and 16 bytes", text(String(repeating: "a", count: 15)) + text(String(repeating: "b", count: 16))),
        ("long ASCII text", text(String(repeating: "0123456789", count: 50))),
        ("multibyte text", frame(1, multibyte)),
        ("binary", frame(2, Array(0...255) + Array(0...255))),
        ("empty binary", frame(2, [])),
        ("ping, text, binary, close", frame(9, [1, 2]) + text("after a ping") + frame(2, [0, 1, 2]) + frame(8, [0x03, 0xE8])),
        ("invalid UTF-8 in the middle", frame(1, Array("abc".utf8) + [0xC0, 0x80] + Array("def".utf8))),
        ("surrogate", frame(1, Array("xy".utf8) + [0xED, 0xA0, 0x80])),
        ("text ending inside a sequence", frame(1, Array("euro ".utf8) + [0xE2, 0x82])),
        ("truncated 4-byte sequence before ASCII", frame(1, [0xF1, 0x80, 0x80, 0x41])),
        ("fragmented text, then a whole one", text("frag", fin: false) + frame(0, Array("ment".utf8)) + text("whole")),
        ("two whole texts with a ping between", text("one") + frame(9, []) + text("two")),
        ("unmasked text (refused by a server)", frame(1, Array("plain".utf8), masked: false)),
        ("text over maxMessageBytes", text(String(repeating: "z", count: 300))),
        ("text of exactly maxMessageBytes", text(String(repeating: "y", count: 256))),
    ]

    @Test("fed whole, in chunks or byte by byte: the same events", arguments: 0..<streams.count)
    func sameEventsAnySplit(_ index: Int) {
        let (name, stream) = Self.streams[index]
        let limits = WebSocketLimits(maxFrameBytes: 1024, maxMessageBytes: 256, maxFragments: 8)
        let whole = run(stream, limits: limits)
        #expect(!whole.isEmpty, "\(name)")
        #expect(run(stream, byteByByte: true, limits: limits) == whole, "\(name)")
        for chunk in [2, 3, 7, 64] {
            #expect(run(stream, chunk: chunk, limits: limits) == whole, "\(name), chunks of \(chunk)")
        }
    }

    @Test("the delivered text is the unmasked payload, with any mask phase and length")
    func unmasksIntoTheString() {
        for length in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            let payload = (0..<length).map { UInt8(0x21 + $0 % 90) }
            let mask: [UInt8] = [0x01, 0x80, 0x7F, 0xFE]
            #expect(run(frame(1, payload, mask: mask)) == [.text(payload)], "length \(length)")
            #expect(run(frame(2, payload, mask: mask)) == [.binary(payload)], "length \(length)")
        }
        #expect(run(frame(1, Self.multibyte)) == [.text(Self.multibyte)])
    }

    @Test("invalid text whole in the buffer fails with the same close frame as in pieces")
    func invalidTextCloseFrames() {
        func close1007(_ reason: String) -> Event {
            .write([0x88, UInt8(2 + reason.utf8.count), 0x03, 0xEF] + Array(reason.utf8))
        }
        #expect(run(frame(1, [0x41, 0xFF, 0x42])) == [close1007("invalid UTF-8 in text message"), .failed(1007)])
        #expect(run(frame(1, [0x41, 0xE2, 0x82])) == [close1007("text message ends inside a UTF-8 sequence"), .failed(1007)])
    }

    @Test("a client receives the server's unmasked frames whole")
    func clientRole() {
        var client = WebSocketConnection(role: .client)
        let stream = frame(1, Self.multibyte, masked: false) + frame(2, [1, 2, 3], masked: false) + frame(1, Array("ok".utf8), masked: false)
        let events = run(stream, connection: &client)
        #expect(events == [.text(Self.multibyte), .binary([1, 2, 3]), .text(Array("ok".utf8))])
        #expect(client.messagesCompleted == 3 && client.framesCompleted == 3 && client.messagesStarted == 3)
    }

    @Test("counters and receive(maxMessages:)'s offsets match frame for frame")
    func countersAndOffsets() {
        let frames = (0..<5).map { text("message \($0)") }
        let stream = frames.flatMap { $0 }
        var connection = WebSocketConnection()
        var offset = 0
        for (i, f) in frames.enumerated() {
            var events: [Event] = []
            let used = stream[offset...].withUnsafeBytes { connection.receive($0, maxMessages: 1) { events.append(Event($0)) } }
            #expect(used == f.count, "message \(i)")
            #expect(events == [.text(Array("message \(i)".utf8))])
            offset += used
        }
        #expect(connection.messagesCompleted == 5 && connection.messagesStarted == 5 && connection.framesCompleted == 5)
        #expect(!connection.isAssemblingMessage && connection.assemblyBytes == 0)
    }

    @Test("a whole message is never held, so it is not charged; the same message in pieces is")
    func budget() {
        let payload = [UInt8](repeating: 0x61, count: 1000)
        let small = RecordingBudget(limit: 500)
        var whole = WebSocketConnection(budget: small)
        #expect(run(frame(1, payload), connection: &whole) == [.text(payload)])
        #expect(small.highest == 0 && small.refusals == 0)
        // In two reads the codec holds the first part between them: charged, and refused here.
        var split = WebSocketConnection(budget: RecordingBudget(limit: 500))
        #expect(run(frame(1, payload), chunk: 600, connection: &split).last == .failed(1013))
        let enough = RecordingBudget(limit: 4096)
        var assembled = WebSocketConnection(budget: enough)
        #expect(run(frame(1, payload), chunk: 600, connection: &assembled) == [.text(payload)])
        #expect(enough.highest >= 1000 && enough.used == 0)
    }
}
