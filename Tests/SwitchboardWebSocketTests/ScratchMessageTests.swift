import Testing
@testable import SwitchboardWebSocket

/// Issue 16 item 3: with a scratch buffer, a message whole in the bytes given is unmasked (and
/// validated) into it and reported as `.inScratch`, so the server lends it to its handler with
/// no `String` or array. Everything else must be what the value path gives: the same messages,
/// close frames and reasons, in the same order, for every split of the input.
@Suite("Codec: whole messages unmasked into the owner's scratch buffer")
struct ScratchMessageTests {
    @Test("the same events as without a scratch buffer, fed whole, in chunks or byte by byte",
          arguments: 0..<WholeMessageTests.streams.count)
    func sameEventsAnySplit(_ index: Int) {
        let (name, stream) = WholeMessageTests.streams[index]
        let limits = WebSocketLimits(maxFrameBytes: 1024, maxMessageBytes: 256, maxFragments: 8)
        let expected = run(stream, limits: limits)
        for chunk in [1, 2, 3, 7, 64, stream.count] {
            #expect(runLending(stream, chunk: chunk, limits: limits).events == expected, "\(name), chunks of \(chunk)")
            #expect(runLending(stream, chunk: chunk, limits: limits, wholeFirst: false).events == expected,
                    "\(name), chunks of \(chunk), receive only")
        }
    }

    @Test("receiveWholeMessage takes the common message, leaving the counters as receive does")
    func wholeMessageFastPath() {
        let stream = text("first") + frame(2, [1, 2, 3]) + frame(1, WholeMessageTests.multibyte)
        var fast = WebSocketConnection()
        var slow = WebSocketConnection()
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { scratch.deallocate() }
        var offset = 0
        var seen: [Event] = []
        while offset < stream.count {
            let taken = stream[offset...].withUnsafeBytes { fast.receiveWholeMessage($0, scratch: scratch) }
            guard let taken else { Issue.record("declined at \(offset)"); return }
            seen.append(Event(.inScratch(taken.opcode, count: taken.count), scratch: scratch))
            let used = stream[offset...].withUnsafeBytes { slow.receive($0, maxMessages: 1) { _ in } }
            #expect(taken.used == used)
            #expect(fast.messagesCompleted == slow.messagesCompleted && fast.messagesStarted == slow.messagesStarted
                    && fast.framesCompleted == slow.framesCompleted && fast.isAssemblingMessage == slow.isAssemblingMessage)
            offset += used
        }
        #expect(seen == [.text(Array("first".utf8)), .binary([1, 2, 3]), .text(WholeMessageTests.multibyte)])
        #expect(fast.messagesCompleted == 3 && fast.framesCompleted == 3 && fast.isOpen)
    }

    @Test("receiveWholeMessage declines anything else, changing nothing")
    func wholeMessageDeclines() {
        let limits = WebSocketLimits(maxFrameBytes: 1024, maxMessageBytes: 256, maxFragments: 8)
        let big = [UInt8](repeating: 0x61, count: 300)
        let rows: [(String, [UInt8])] = [
            ("a fragment", text("frag", fin: false)),
            ("a ping", frame(9, [1])),
            ("a close", frame(8, [0x03, 0xE8])),
            ("empty text", text("")),
            ("empty binary", frame(2, [])),
            ("invalid UTF-8", frame(1, [0x41, 0xFF])),
            ("text ending inside a sequence", frame(1, [0x41, 0xE2, 0x82])),
            ("unmasked", frame(1, Array("x".utf8), masked: false)),
            ("RSV1", frame(1, Array("x".utf8), rsv: 4)),
            ("over maxMessageBytes", frame(2, big)),
            ("over maxFrameBytes", frame(2, [UInt8](repeating: 1, count: 1025))),
            ("over the scratch buffer", frame(2, [UInt8](repeating: 1, count: 65))),
            ("half a header", Array(text("hello").prefix(1))),
            ("a header without all of its payload", Array(text("hello").dropLast())),
            ("64-bit length with the top bit set", [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0] + testMask),
        ]
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { scratch.deallocate() }
        for (name, bytes) in rows {
            var connection = WebSocketConnection(limits: limits)
            #expect(bytes.withUnsafeBytes { connection.receiveWholeMessage($0, scratch: scratch) } == nil, "\(name)")
            #expect(connection.messagesStarted == 0 && connection.framesCompleted == 0 && connection.messagesCompleted == 0
                    && connection.isOpen, "\(name)")
            // And `receive` then handles it exactly as it does on a fresh connection.
            var fresh = WebSocketConnection(limits: limits)
            var after: [Event] = []
            var expected: [Event] = []
            _ = bytes.withUnsafeBytes { connection.receive($0, maxMessages: 1) { after.append(Event($0)) } }
            _ = bytes.withUnsafeBytes { fresh.receive($0, maxMessages: 1) { expected.append(Event($0)) } }
            #expect(after == expected, "\(name)")
        }
        // In the middle of a fragmented message, or after our close: declined too.
        var assembling = WebSocketConnection()
        text("frag", fin: false).withUnsafeBytes { assembling.receive($0) { _ in } }
        #expect(text("x").withUnsafeBytes { assembling.receiveWholeMessage($0, scratch: scratch) } == nil)
        var closing = WebSocketConnection()
        _ = closing.initiateClose(code: 1000, reason: "")
        #expect(text("x").withUnsafeBytes { closing.receiveWholeMessage($0, scratch: scratch) } == nil)
    }

    @Test("which messages are lent: whole in the bytes given, one frame, not empty, fitting the buffer")
    func whichAreLent() {
        let hello = text("hello")
        #expect(runLending(hello) == ([.text(Array("hello".utf8))], 1))
        #expect(runLending(frame(2, [0, 0xFF, 0x80])) == ([.binary([0, 0xFF, 0x80])], 1))
        // Split across reads: assembled, a value.
        #expect(runLending(hello, chunk: 4) == ([.text(Array("hello".utf8))], 0))
        // Fragmented: a value; the whole message after it is lent.
        let fragmented = text("frag", fin: false) + frame(0, Array("ment".utf8)) + text("whole")
        #expect(runLending(fragmented) == ([.text(Array("fragment".utf8)), .text(Array("whole".utf8))], 1))
        // Empty: nothing to lend.
        #expect(runLending(text("") + frame(2, [])) == ([.text([]), .binary([])], 0))
        // Exactly the buffer's size is lent; one byte more is a value.
        let payload = [UInt8](repeating: 0x41, count: 100)
        #expect(runLending(frame(1, payload), scratchBytes: 100) == ([.text(payload)], 1))
        #expect(runLending(frame(1, payload), scratchBytes: 99) == ([.text(payload)], 0))
        #expect(runLending(frame(2, payload), scratchBytes: 0) == ([.binary(payload)], 0))
        // Control frames around a lent message keep their order.
        let mixed = frame(9, [7]) + text("x") + frame(8, [0x03, 0xE8])
        #expect(runLending(mixed) == ([.write([0x8A, 1, 7]), .text(Array("x".utf8)), .write([0x88, 2, 0x03, 0xE8]), .closed(1000, "")], 1))
    }

    @Test("the lent bytes are the unmasked payload, with any length and mask")
    func unmasksIntoScratch() {
        let mask: [UInt8] = [0x01, 0x80, 0x7F, 0xFE]
        for length in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            let ascii = (0..<length).map { UInt8(0x21 + $0 % 90) }
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(runLending(frame(1, ascii, mask: mask)) == ([.text(ascii)], 1), "length \(length)")
            #expect(runLending(frame(2, bytes, mask: mask)) == ([.binary(bytes)], 1), "length \(length)")
        }
        #expect(runLending(frame(1, WholeMessageTests.multibyte)) == ([.text(WholeMessageTests.multibyte)], 1))
    }

    @Test("invalid text is never lent: the same 1007 close frame and reason as the value path")
    func invalidTextFails() {
        func close1007(_ reason: String) -> Event {
            .write([0x88, UInt8(2 + reason.utf8.count), 0x03, 0xEF] + Array(reason.utf8))
        }
        let rows: [([UInt8], String)] = [
            ([0x41, 0xFF, 0x42], "invalid UTF-8 in text message"),
            (Array("abcdefgh".utf8) + [0xC0, 0x80], "invalid UTF-8 in text message"),
            (Array("xy".utf8) + [0xED, 0xA0, 0x80], "invalid UTF-8 in text message"),
            ([0x41, 0xE2, 0x82], "text message ends inside a UTF-8 sequence"),
            ([0xF1, 0x80, 0x80, 0x41], "invalid UTF-8 in text message"),
        ]
        for (payload, reason) in rows {
            let (events, lent) = runLending(frame(1, payload) + text("after"))
            #expect(events == [close1007(reason), .failed(1007)], "\(payload)")
            #expect(lent == 0)
        }
        // Binary is not validated: the same bytes are lent.
        #expect(runLending(frame(2, [0x41, 0xFF, 0x42])) == ([.binary([0x41, 0xFF, 0x42])], 1))
    }

    @Test("a client's unmasked frames are copied into the buffer")
    func clientRole() {
        var client = WebSocketConnection(role: .client)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { scratch.deallocate() }
        let stream = frame(1, Array("ok €".utf8), masked: false) + frame(2, [9, 8, 7], masked: false)
        var events: [Event] = []
        var offset = 0
        while offset < stream.count {
            offset += stream[offset...].withUnsafeBytes { bytes in
                client.receive(bytes, maxMessages: 1, scratch: scratch) { event in
                    guard case .inScratch = event else { Issue.record("not lent: \(Event(event))"); return }
                    events.append(Event(event, scratch: scratch))
                }
            }
        }
        #expect(events == [.text(Array("ok €".utf8)), .binary([9, 8, 7])])
        #expect(client.messagesCompleted == 2 && client.framesCompleted == 2)
    }

    @Test("a compressed message is a value (inflated into the assembly buffer), never lent")
    func compressedIsAValue() {
        let message = Array(String(repeating: "compressible text ", count: 40).utf8)
        let compressed = TestZlib(deflateBits: 15).process(message)
        let (events, lent) = runLending(frame(1, compressed, rsv: 4) + text("plain"), deflate: PerMessageDeflateParameters())
        #expect(events == [.text(message), .text(Array("plain".utf8))])
        #expect(lent == 1)
    }
}
