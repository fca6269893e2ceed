import Testing
@testable import SwitchboardWebSocket

/// `WebSocketCodecSettings.textAsBytes` (the broker's setting): a text message the
/// codec assembled is handed over as its validated bytes (`.textBytes`) instead of a `String`;
/// everything else, failures included, is as with the default, which keeps `String`s.
@Suite("Codec: assembled text handed over as bytes when the settings ask")
struct AssembledTextBytesTests {
    static let euro = Array("fragment €".utf8)

    /// Every raw event of `stream` fed in `chunk`-byte pieces (no scratch buffer).
    private func events(_ stream: [UInt8], bytes: Bool, chunk: Int) -> [WebSocketEvent] {
        let settings = WebSocketCodecSettings(textAsBytes: bytes)
        var codec = WebSocketConnection(settings: settings)
        var seen: [WebSocketEvent] = []
        var offset = 0
        while offset < stream.count {
            let end = min(offset + chunk, stream.count)
            stream[offset..<end].withUnsafeBytes { piece in codec.receive(piece) { seen.append($0) } }
            offset = end
        }
        return seen
    }

    @Test("fragmented, empty and split text: .textBytes with the setting, .text without; binary unchanged")
    func assembledText() {
        let stream = frame(1, Array("frag".utf8), fin: false) + frame(0, Array("ment €".utf8))
            + frame(1, []) + frame(2, [1, 2, 3], fin: false) + frame(0, [4])
        for chunk in [1, 3, stream.count] {
            let asBytes = events(stream, bytes: true, chunk: chunk)
            #expect(asBytes.count == 3, "chunks of \(chunk)")
            guard asBytes.count == 3 else { continue }
            if case .textBytes(let b) = asBytes[0] { #expect(b == Self.euro) } else { Issue.record("not textBytes: \(asBytes[0])") }
            if case .textBytes(let b) = asBytes[1] { #expect(b.isEmpty) } else { Issue.record("not textBytes: \(asBytes[1])") }
            if case .binary(let b) = asBytes[2] { #expect(b == [1, 2, 3, 4]) } else { Issue.record("not binary: \(asBytes[2])") }
            // The same messages as the default's Strings.
            let asStrings = events(stream, bytes: false, chunk: chunk)
            #expect(asStrings.map { Event($0) } == asBytes.map { Event($0) })
            if case .text(let s) = asStrings[0] { #expect(s == "fragment €") } else { Issue.record("not text: \(asStrings[0])") }
        }
    }

    @Test("invalid or cut UTF-8 in an assembled message fails with 1007 before any bytes are handed over")
    func invalidNeverHandedOver() {
        let rows: [[UInt8]] = [
            frame(1, Array("ab".utf8), fin: false) + frame(0, [0xC0, 0x80]),
            frame(1, Array("euro ".utf8) + [0xE2], fin: false) + frame(0, [0x82]),  // ends inside the sequence
        ]
        for stream in rows {
            let seen = events(stream, bytes: true, chunk: 2)
            #expect(!seen.contains { if case .textBytes = $0 { true } else { false } })
            #expect(seen.contains { if case .failed(1007, _) = $0 { true } else { false } }, "\(seen.map { Event($0) })")
        }
    }

    /// The events of `stream`, whole in one buffer, received one message at a time with a
    /// `scratchBytes` scratch buffer (as the broker's driver receives).
    private func wholeEvents(_ stream: [UInt8], bytes: Bool, scratchBytes: Int) -> [WebSocketEvent] {
        var codec = WebSocketConnection(settings: WebSocketCodecSettings(textAsBytes: bytes))
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: scratchBytes, alignment: 16)
        defer { scratch.deallocate() }
        var seen: [WebSocketEvent] = []
        stream.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count && codec.isOpen {
                offset += codec.receive(UnsafeRawBufferPointer(rebasing: all[offset...]), maxMessages: 1, scratch: scratch) { seen.append($0) }
            }
        }
        return seen
    }

    @Test("whole in the buffer but over the scratch buffer: .textBytes with the setting, .text without; invalid text fails with 1007 before any bytes are handed over")
    func wholeOverScratch() {
        let long = Array("longer than the sixteen-byte scratch, and € not ASCII".utf8)
        let asBytes = wholeEvents(frame(1, long), bytes: true, scratchBytes: 16)
        #expect(asBytes.count == 1)
        if case .textBytes(let b) = asBytes.first { #expect(b == long) } else { Issue.record("not textBytes: \(asBytes)") }
        let asString = wholeEvents(frame(1, long), bytes: false, scratchBytes: 16)
        if case .text(let t) = asString.first { #expect(Array(t.utf8) == long) } else { Issue.record("not text: \(asString)") }
        // Fits the scratch: lent from it either way.
        let short = wholeEvents(frame(1, Array("short".utf8)), bytes: true, scratchBytes: 16)
        if case .inScratch(.text, 5) = short.first {} else { Issue.record("not inScratch: \(short)") }
        // Invalid, or ending inside a sequence, over the scratch: 1007, nothing handed over.
        for bad in [long + [0xC0, 0x80] + long, long + [0xE2, 0x82]] {
            let seen = wholeEvents(frame(1, bad), bytes: true, scratchBytes: 16)
            #expect(!seen.contains { if case .textBytes = $0 { true } else { false } })
            #expect(seen.contains { if case .failed(1007, _) = $0 { true } else { false } }, "\(seen.map { Event($0) })")
        }
    }
}
