import Testing
@testable import SwitchboardWebSocket

/// The assembling path's one pass (`UnmaskedPayload`, `Masking.applyGatheringBits`): a payload
/// read in pieces is unmasked straight into the message, and the bits gathered on the way let
/// ASCII text skip the UTF-8 validator. Checked against a byte-at-a-time reference.
@Suite("Codec: payload in pieces unmasked into the message in one pass")
struct UnmaskedPayloadTests {
    static let key = Masking.key(0x37, 0xFA, 0x21, 0x3D)

    /// The reference: byte by byte, the key byte at `(phase + i) % 4`.
    static func reference(_ source: [UInt8], phase: Int) -> [UInt8] {
        let keyBytes: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        return source.enumerated().map { $0.element ^ keyBytes[(phase + $0.offset) & 3] }
    }

    /// Deterministic bytes: ASCII only, or with one byte at `high` given its high bit.
    static func bytes(count: Int, highAt high: Int?) -> [UInt8] {
        var out = (0..<count).map { UInt8(truncatingIfNeeded: 0x21 + ($0 * 7) % 90) }
        if let high, high < count { out[high] |= 0x80 }
        return out
    }

    /// Lengths around the compiler's 32-byte vector steps and the 8-byte word steps after them.
    static let lengths = Array(0...72) + [95, 96, 97, 127, 128, 129, 1_000, 4_099]

    /// Where a high bit goes: nowhere, or at a spread of places (every place when short).
    static func highPlaces(_ count: Int) -> [Int?] {
        count <= 72 ? [nil] + Array(0..<count) : [nil, 0, 31, 32, count / 2, count - 9, count - 1]
    }

    @Test("lengths around every step and each phase: the reference's bytes, the next phase, the high bit where one is set")
    func matchesReference() {
        for count in Self.lengths {
            for phase in 0..<4 {
                for high in Self.highPlaces(count) {
                    let plain = Self.bytes(count: count, highAt: high)
                    let masked = Self.reference(plain, phase: phase)  // XOR is its own inverse
                    var out = [UInt8](repeating: 0, count: count)
                    let (next, bits) = masked.withUnsafeBytes { src in
                        out.withUnsafeMutableBytes { dst in
                            Masking.applyGatheringBits(key: Self.key, phase: phase, source: src.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!,
                                                       destination: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
                        }
                    }
                    #expect(out == plain, "count \(count) phase \(phase) high \(String(describing: high))")
                    #expect(next == (phase + count) & 3)
                    #expect((bits & 0x80 != 0) == (high != nil), "count \(count) phase \(phase) high \(String(describing: high))")
                    #expect(bits == plain.reduce(0, |), "every bit of every byte is gathered")
                }
            }
        }
    }

    @Test("apply and applyReportingASCII (whole messages) against the reference at the same lengths")
    func wholeMessageForms() {
        for count in Self.lengths {
            for high in Self.highPlaces(count) {
                let plain = Self.bytes(count: count, highAt: high)
                for phase in 0..<4 {
                    let masked = Self.reference(plain, phase: phase)
                    var out = [UInt8](repeating: 0, count: count)
                    let next = masked.withUnsafeBytes { src in
                        out.withUnsafeMutableBytes { dst in
                            Masking.apply(key: Self.key, phase: phase, source: src.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!,
                                          destination: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
                        }
                    }
                    #expect(out == plain && next == (phase + count) & 3, "apply: count \(count) phase \(phase)")
                }
                let masked = Self.reference(plain, phase: 0)
                var out = [UInt8](repeating: 0, count: count)
                let ascii = masked.withUnsafeBytes { src in
                    out.withUnsafeMutableBytes { dst in
                        Masking.applyReportingASCII(key: Self.key, source: src.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!,
                                                    destination: dst.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 2)!, count: count)
                    }
                }
                #expect(out == plain, "applyReportingASCII: count \(count)")
                #expect(ascii == (high == nil), "applyReportingASCII: count \(count) high \(String(describing: high))")
            }
        }
    }

    @Test("in place, as the control path unmasks: the same bytes")
    func inPlace() {
        for count in [0, 7, 8, 15, 16, 17, 33, 64, 65, 100] {
            let plain = Self.bytes(count: count, highAt: count / 2)
            var buffer = Self.reference(plain, phase: 2)
            _ = buffer.withUnsafeMutableBytes {
                Masking.applyGatheringBits(key: Self.key, phase: 2, source: UnsafeRawPointer($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!),
                                           destination: $0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
            }
            #expect(buffer == plain, "count \(count)")
        }
    }

    @Test("appended (the spare capacity, one pass) and iterated (byte by byte): the same bytes, phase and bits")
    func appendAndIterate() {
        for phase in 0..<4 {
            let plain = Self.bytes(count: 37, highAt: 20)
            let masked = Self.reference(plain, phase: phase)
            masked.withUnsafeBytes { src in
                var appended: [UInt8] = [9, 9]
                var fast: (nextPhase: Int, bits: UInt8) = (phase, 0)
                withUnsafeMutablePointer(to: &fast) {
                    appended.append(contentsOf: UnmaskedPayload(source: src.baseAddress!, count: 37, key: Self.key, phase: phase, result: $0))
                }
                var slow: (nextPhase: Int, bits: UInt8) = (phase, 0)
                let iterated = withUnsafeMutablePointer(to: &slow) {
                    Array(IteratorSequence(UnmaskedPayload(source: src.baseAddress!, count: 37, key: Self.key, phase: phase, result: $0).makeIterator()))
                }
                #expect(appended == [9, 9] + plain)
                #expect(iterated == plain)
                #expect(fast.nextPhase == (phase + 37) & 3 && slow.nextPhase == fast.nextPhase)
                #expect(fast.bits == slow.bits && fast.bits & 0x80 != 0)
            }
        }
    }

    /// The events of `stream` fed in `chunk`-byte pieces.
    private func events(_ stream: [UInt8], chunk: Int) -> [Event] {
        var codec = WebSocketConnection(settings: WebSocketCodecSettings(textAsBytes: true))
        var seen: [Event] = []
        var offset = 0
        while offset < stream.count {
            let end = min(offset + chunk, stream.count)
            stream[offset..<end].withUnsafeBytes { piece in codec.receive(piece) { seen.append(Event($0)) } }
            offset = end
        }
        return seen
    }

    @Test("ASCII pieces skip the validator only at a character boundary: a sequence cut by a read and an ASCII piece after it fail")
    func asciiSkipOnlyAtBoundary() {
        // "é" = C3 A9. Fed in pieces of 4, the frame's header (6 bytes) then payload pieces.
        let good = Array("abcdefgé".utf8) + Array("hijklmnop".utf8)
        let goodStream = frame(1, good)
        for chunk in [1, 2, 3, 4, 7, 9] {
            #expect(events(goodStream, chunk: chunk) == [.text(good)], "chunk \(chunk)")
        }
        // A lead byte then ASCII: invalid however the reads fall, including an all-ASCII piece
        // after a piece ending in the lead byte (the skip must not apply mid-sequence).
        let bad = Array("abcdefg".utf8) + [0xC3] + Array("hijklmnop".utf8)
        for chunk in [1, 2, 3, 4, 7, 9] {
            let seen = events(frame(1, bad), chunk: chunk)
            #expect(seen.contains { if case .failed(1007) = $0 { true } else { false } }, "chunk \(chunk): \(seen)")
            #expect(!seen.contains { if case .text = $0 { true } else { false } })
        }
        // A lead byte, ASCII, then a continuation byte: read in pieces where the ASCII is a
        // piece of its own, a validator skipped mid-sequence would take the continuation as
        // the end of the sequence and accept the message.
        let split = Array("abc".utf8) + [0xC3] + Array("defg".utf8) + [0xA9] + Array("xyz".utf8)
        for chunk in [1, 2, 3, 4] {
            let seen = events(frame(1, split), chunk: chunk)
            #expect(seen.contains { if case .failed(1007) = $0 { true } else { false } }, "chunk \(chunk): \(seen)")
            #expect(!seen.contains { if case .text = $0 { true } else { false } })
        }
        // Ends inside a sequence, the last pieces ASCII-free: 1007 at the end.
        let cut = frame(1, Array("abcdefgh".utf8) + [0xE2, 0x82])
        for chunk in [1, 4, 8] {
            #expect(events(cut, chunk: chunk).contains { if case .failed(1007) = $0 { true } else { false } }, "chunk \(chunk)")
        }
    }
}
