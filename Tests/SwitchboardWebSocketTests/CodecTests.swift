/// Bad client input -> the close code the server answers with (each row is fed whole and one byte
/// at a time; the expected `.write` is the exact close frame `88 len code reason`, then `.failed`):
///
/// | Input                                              | Code |
/// |----------------------------------------------------|------|
/// | unmasked data or control frame                     | 1002 |
/// | RSV1 without permessage-deflate                    | 1002 |
/// | RSV1 on a control frame / on a continuation frame  | 1002 |
/// | RSV2 or RSV3 set                                   | 1002 |
/// | reserved opcode 3-7, 11-15                         | 1002 |
/// | control frame with FIN=0                           | 1002 |
/// | control frame payload > 125                        | 1002 |
/// | continuation without a message                     | 1002 |
/// | text/binary while a fragmented message is open     | 1002 |
/// | 64-bit length with top bit set                     | 1002 |
/// | close payload of 1 byte                            | 1002 |
/// | close code 0, 999, 1004-1006, 1015-2999, >= 5000   | 1002 |
/// | close reason not UTF-8                             | 1007 |
/// | text not UTF-8 (fails at the first bad byte)       | 1007 |
/// | text ending inside a UTF-8 sequence                | 1007 |
/// | frame declared over maxFrameBytes                  | 1009 |
/// | message over maxMessageBytes                       | 1009 |
/// | more than maxFragments frames in a message         | 1009 |
/// | corrupt compressed data                            | 1002 |
/// | compressed message inflating past maxMessageBytes  | 1009 |
///
/// Non-minimal length encodings are accepted (see ``WebSocketConnection``).
import Testing
@testable import SwitchboardWebSocket

struct BadFrame: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var code: UInt16
    var limits = WebSocketLimits()
    var testDescription: String { name }
}

private func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}

let badFrames: [BadFrame] = [
    BadFrame(name: "unmasked text", bytes: frame(1, Array("hi".utf8), masked: false), code: 1002),
    BadFrame(name: "unmasked ping", bytes: frame(9, [], masked: false), code: 1002),
    BadFrame(name: "RSV1 without deflate", bytes: frame(1, Array("hi".utf8), rsv: 4), code: 1002),
    BadFrame(name: "RSV2", bytes: frame(2, [1], rsv: 2), code: 1002),
    BadFrame(name: "RSV3", bytes: frame(2, [1], rsv: 1), code: 1002),
    BadFrame(name: "RSV1 on ping", bytes: frame(9, [], rsv: 4), code: 1002),
    BadFrame(name: "opcode 3", bytes: frame(3, []), code: 1002),
    BadFrame(name: "opcode 7", bytes: frame(7, [1, 2]), code: 1002),
    BadFrame(name: "opcode 11", bytes: frame(11, []), code: 1002),
    BadFrame(name: "opcode 15", bytes: frame(15, [1]), code: 1002),
    BadFrame(name: "fragmented ping", bytes: frame(9, [1], fin: false), code: 1002),
    BadFrame(name: "ping payload 126", bytes: frame(9, [UInt8](repeating: 0x61, count: 126)), code: 1002),
    BadFrame(name: "close payload 126 (16-bit form)", bytes: frame(8, closePayload(1000, [UInt8](repeating: 0x61, count: 124))), code: 1002),
    BadFrame(name: "continuation without message", bytes: frame(0, [1]), code: 1002),
    BadFrame(name: "continuation without message after a complete one", bytes: text("a") + frame(0, [0x61]), code: 1002),
    BadFrame(name: "text inside fragmented text", bytes: text("a", fin: false) + text("b"), code: 1002),
    BadFrame(name: "binary inside fragmented text", bytes: text("a", fin: false) + frame(2, [1]), code: 1002),
    BadFrame(name: "RSV1 on continuation without deflate", bytes: text("a", fin: false) + frame(0, [0x61], rsv: 4), code: 1002),
    BadFrame(name: "64-bit length top bit", bytes: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1] + testMask, code: 1002),
    BadFrame(name: "close payload 1 byte", bytes: frame(8, [0x03]), code: 1002),
    BadFrame(name: "close code 0", bytes: frame(8, closePayload(0)), code: 1002),
    BadFrame(name: "close code 999", bytes: frame(8, closePayload(999)), code: 1002),
    BadFrame(name: "close code 1004", bytes: frame(8, closePayload(1004)), code: 1002),
    BadFrame(name: "close code 1005", bytes: frame(8, closePayload(1005)), code: 1002),
    BadFrame(name: "close code 1006", bytes: frame(8, closePayload(1006)), code: 1002),
    BadFrame(name: "close code 1015", bytes: frame(8, closePayload(1015)), code: 1002),
    BadFrame(name: "close code 1016", bytes: frame(8, closePayload(1016)), code: 1002),
    BadFrame(name: "close code 2999", bytes: frame(8, closePayload(2999)), code: 1002),
    BadFrame(name: "close code 5000", bytes: frame(8, closePayload(5000)), code: 1002),
    BadFrame(name: "close code 65535", bytes: frame(8, closePayload(65535)), code: 1002),
    BadFrame(name: "close reason invalid UTF-8", bytes: frame(8, closePayload(1000, [0xCE, 0xBA, 0xED, 0xA0, 0x80])), code: 1007),
    BadFrame(name: "close reason truncated UTF-8", bytes: frame(8, closePayload(1000, [0x61, 0xE2, 0x82])), code: 1007),
    BadFrame(name: "text invalid UTF-8", bytes: frame(1, [0x61, 0xFF, 0x62]), code: 1007),
    BadFrame(name: "text surrogate", bytes: frame(1, [0xED, 0xA0, 0x80]), code: 1007),
    BadFrame(name: "text overlong", bytes: frame(1, [0xC0, 0xAF]), code: 1007),
    BadFrame(name: "text truncated at end", bytes: frame(1, [0x61, 0xF0, 0x9F, 0x98]), code: 1007),
    BadFrame(name: "fragmented text truncated at end", bytes: frame(1, [0xF0, 0x9F], fin: false) + frame(0, [0x98]), code: 1007),
    BadFrame(name: "fragmented text invalid across fragments", bytes: frame(1, [0xF0, 0x9F], fin: false) + frame(0, [0x41, 0x41]), code: 1007),
    BadFrame(name: "frame over maxFrameBytes", bytes: frame(2, [UInt8](repeating: 1, count: 200)), code: 1009,
             limits: WebSocketLimits(maxFrameBytes: 100)),
    BadFrame(name: "64-bit length over maxFrameBytes", bytes: [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0] + testMask, code: 1009),
    BadFrame(name: "message over maxMessageBytes", bytes: frame(2, [UInt8](repeating: 1, count: 60), fin: false) + frame(0, [UInt8](repeating: 1, count: 60)),
             code: 1009, limits: WebSocketLimits(maxMessageBytes: 100)),
    BadFrame(name: "too many fragments", bytes: frame(2, [1], fin: false) + frame(0, [1], fin: false) + frame(0, [1], fin: false) + frame(0, [1]),
             code: 1009, limits: WebSocketLimits(maxFragments: 3)),
]

@Suite struct CodecTests {
    @Test(arguments: badFrames)
    func badFrameFails(_ row: BadFrame) {
        for byteByByte in [false, true] {
            let events = run(row.bytes, byteByByte: byteByByte, limits: row.limits)
            // Valid frames before the bad one may deliver messages; the last two events are the failure.
            #expect(events.count >= 2, "\(byteByByte)")
            guard events.count >= 2 else { continue }
            guard case .write(let close) = events[events.count - 2] else {
                Issue.record("expected write, got \(events)")
                continue
            }
            #expect(close[0] == 0x88 && Int(close[1]) == close.count - 2 && close.count <= 127)
            #expect(closeCode(ofWrite: close) == row.code)
            #expect(events.last == .failed(row.code))
        }
    }

    /// The failure close frame bytes, exactly.
    @Test func failureCloseFrameExact() {
        let events = run(frame(1, Array("hi".utf8), masked: false))
        let reason = Array("client frame not masked".utf8)
        #expect(events == [.write([0x88, UInt8(2 + reason.count), 0x03, 0xEA] + reason), .failed(1002)])
    }

    @Test func inputAfterFailureIgnored() {
        let events = run(frame(3, []) + text("late"))
        #expect(events.count == 2)
    }

    @Test(arguments: [0, 1, 125, 126, 1000, 65535, 65536, 70000])
    func validTextAndBinary(_ size: Int) {
        let payload = (0..<size).map { UInt8(0x20 + $0 % 90) }
        var forms: [LengthForm] = [.sixtyFour]
        if size < 126 { forms.append(.minimal) }
        if size <= 0xFFFF { forms.append(.sixteen) }
        for form in forms {
            #expect(run(frame(1, payload, form: form)) == [.text(payload)])
            #expect(run(frame(2, payload, form: form), chunk: 7) == [.binary(payload)])
        }
    }

    @Test func byteByByteEquivalence() {
        let stream = text("Hello, ") + frame(1, Array("héllo €𝄞".utf8)) + frame(2, [1, 2, 3], fin: false) + frame(9, [7])
            + frame(0, [4], fin: false) + frame(10, [8]) + frame(0, [5]) + frame(8, closePayload(1000, Array("bye".utf8)))
        let whole = run(stream)
        #expect(whole == run(stream, byteByByte: true))
        for chunk in [2, 3, 5, 13] { #expect(whole == run(stream, chunk: chunk)) }
        #expect(whole == [
            .text(Array("Hello, ".utf8)), .text(Array("héllo €𝄞".utf8)),
            .write([0x8A, 0x01, 7]), .pong([8]), .binary([1, 2, 3, 4, 5]),
            .write([0x88, 0x02, 0x03, 0xE8]), .closed(1000, "bye"),
        ])
    }

    @Test func fragmentedTextWithInterleavedPing() {
        let stream = text("Hel", fin: false) + frame(9, Array("ping".utf8)) + frame(0, Array("lo".utf8), fin: false) + frame(0, [], fin: true)
        #expect(run(stream, byteByByte: true) == [.write([0x8A, 0x04] + Array("ping".utf8)), .text(Array("Hello".utf8))])
    }

    @Test func pingPongExact() {
        #expect(run(frame(9, [])) == [.write([0x8A, 0x00])])
        let payload = [UInt8](repeating: 0xAB, count: 125)
        #expect(run(frame(9, payload)) == [.write([0x8A, 125] + payload)])
        #expect(WebSocketConnection.pingFrame([1, 2]) == [0x89, 2, 1, 2])
    }

    @Test func closeEcho() {
        #expect(run(frame(8, [])) == [.write([0x88, 0x00]), .closed(1005, "")])
        #expect(run(frame(8, closePayload(3000))) == [.write([0x88, 0x02, 0x0B, 0xB8]), .closed(3000, "")])
        #expect(run(frame(8, closePayload(1013))) == [.write([0x88, 0x02, 0x03, 0xF5]), .closed(1013, "")])
        // Anything after the close is ignored.
        #expect(run(frame(8, []) + text("x")) == [.write([0x88, 0x00]), .closed(1005, "")])
    }

    @Test func serverInitiatedClose() {
        var connection = WebSocketConnection()
        #expect(connection.isOpen)
        #expect(connection.initiateClose(code: 1001, reason: "bye") == [0x88, 5, 0x03, 0xE9] + Array("bye".utf8))
        #expect(!connection.isOpen)
        #expect(connection.initiateClose(code: 1000, reason: "") == [])
        // Data and pings after our close are dropped; the peer's close finishes without a reply.
        let events = run(text("dropped") + frame(9, [1]) + frame(8, closePayload(1000)), connection: &connection)
        #expect(events == [.closed(1000, "")])
    }

    @Test func failFastInsidePartialFrame() {
        // The invalid byte arrives before the rest of the frame: the failure must not wait for it.
        let whole = frame(1, Array("κόσμε".utf8) + [0xF4, 0x90, 0x80, 0x80] + Array("edited".utf8))
        var connection = WebSocketConnection()
        let events = run(Array(whole.prefix(6 + 14)), connection: &connection)
        #expect(events.last == .failed(1007))
    }

    @Test func nonMinimalLengthsAccepted() {
        #expect(run(frame(2, [1, 2], form: .sixteen)) == [.binary([1, 2])])
        #expect(run(frame(2, [1, 2], form: .sixtyFour)) == [.binary([1, 2])])
    }

    @Test func encodeHeaders() {
        for (count, header) in [(0, [0x81, 0]), (125, [0x81, 125]), (126, [0x81, 126, 0, 126]), (65535, [0x81, 126, 0xFF, 0xFF]),
                                (65536, [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0])] as [(Int, [UInt8])] {
            let payload = [UInt8](repeating: 0x61, count: count)
            let encoded = payload.withUnsafeBytes { WebSocketFrame.encode(opcode: .text, payload: $0) }
            #expect(Array(encoded.prefix(header.count)) == header)
            #expect(encoded.count == header.count + count)
            #expect(WebSocketFrame.headerSize(payloadCount: count) == header.count)
        }
        let fragment = [UInt8]([1]).withUnsafeBytes { WebSocketFrame.encode(opcode: .binary, payload: $0, fin: false, rsv1: true) }
        #expect(fragment == [0x42, 1, 1])
        var connection = WebSocketConnection()
        #expect(Array("hi".utf8).withUnsafeBytes { connection.encodeMessage($0, opcode: .text) } == [0x81, 2, 0x68, 0x69])
    }

    @Test func closeReasonTruncatedAtCharacterBoundary() {
        let bytes = WebSocketFrame.close(code: 1000, reason: String(repeating: "é", count: 100))
        #expect(bytes.count <= 127)
        var validator = UTF8Validator()
        #expect(bytes.dropFirst(4).withUnsafeBytes { validator.validate($0) } && validator.isComplete)
    }

    @Test func unmaskAllPhasesAndLengths() {
        for count in 0..<40 {
            for phase in 0..<4 {
                let data = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
                var out = [UInt8](repeating: 0, count: count)
                let key: [UInt8] = [0x12, 0x34, 0x56, 0x78]
                let next = data.withUnsafeBytes { src in
                    out.withUnsafeMutableBytes { dst in
                        Masking.apply(key: Masking.key(key[0], key[1], key[2], key[3]), phase: phase,
                                      source: src.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, destination: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
                    }
                }
                #expect(next == (phase + count) & 3)
                #expect(out == data.enumerated().map { $0.element ^ key[($0.offset + phase) & 3] })
            }
        }
    }

    /// The unmask a whole text message takes: same bytes as `apply`, and "all ASCII" exactly
    /// when no output byte has its high bit set, wherever the one such byte falls (in a word
    /// or in the tail), and with key 0 (a plain copy).
    @Test func unmaskReportingASCIIAllLengthsAndPositions() {
        for keyBytes: [UInt8] in [[0x12, 0x34, 0x56, 0x78], [0x00, 0x00, 0x00, 0x00], [0x80, 0x01, 0xFF, 0x7F]] {
            let key = Masking.key(keyBytes[0], keyBytes[1], keyBytes[2], keyBytes[3])
            for count in 0..<40 {
                for high in -1..<count {  // -1: every output byte ASCII; else the one that is not
                    let plain = (0..<count).map { $0 == high ? UInt8(0x80 | ($0 & 0x7F)) : UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) & 0x7F }
                    let masked = plain.enumerated().map { $0.element ^ keyBytes[$0.offset & 3] }
                    var out = [UInt8](repeating: 0, count: count)
                    let ascii = masked.withUnsafeBytes { src in
                        out.withUnsafeMutableBytes { dst in
                            Masking.applyReportingASCII(key: key, source: src.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!,
                                                        destination: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
                        }
                    }
                    #expect(out == plain)
                    #expect(ascii == (high < 0), "count \(count), high byte at \(high)")
                }
            }
        }
    }

    /// A whole masked text frame with one non-ASCII byte at each position: valid UTF-8 (é) is
    /// delivered, a stray continuation byte fails with 1007, so the ASCII shortcut of the
    /// whole-message path never lets a byte skip validation.
    @Test func wholeTextMessageValidatedPastASCIIShortcut() {
        for count in 2..<30 {
            for position in 0..<(count - 1) {
                var good = [UInt8](repeating: UInt8(ascii: "a"), count: count)
                good[position] = 0xC3; good[position + 1] = 0xA9  // é
                var bad = [UInt8](repeating: UInt8(ascii: "a"), count: count)
                bad[position] = 0xA9  // continuation byte without a lead
                for (payload, valid) in [(good, true), (bad, false)] {
                    var connection = WebSocketConnection()
                    var events: [WebSocketEvent] = []
                    let frame = payload.withUnsafeBytes { WebSocketFrame.encode(opcode: .text, payload: $0, maskKey: Masking.key(0x0F, 0xF0, 0x55, 0xAA)) }
                    frame.withUnsafeBytes { connection.receive($0) { events.append($0) } }
                    if valid {
                        guard case .text(let text)? = events.first, events.count == 1 else {
                            Issue.record("count \(count) position \(position): \(events)"); continue
                        }
                        #expect(Array(text.utf8) == payload)
                    } else {
                        guard case .failed(let code, _)? = events.last else {
                            Issue.record("count \(count) position \(position): \(events)"); continue
                        }
                        #expect(code == WebSocketCloseCode.invalidPayload)
                    }
                }
            }
        }
    }
}
