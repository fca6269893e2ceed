import Testing
@testable import SwitchboardWebSocket

/// SplitMix64: deterministic, seedable, no Foundation.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct FuzzTests {
    /// Random valid-ish frame streams, then random byte mutations, fed in random chunk sizes.
    /// Invariants: no crash, delivered text is valid UTF-8, nothing after .closed/.failed, and a
    /// failure is always preceded by exactly one close frame write.
    @Test func mutatedFrameStreams() {
        var rng = SplitMix64(state: 0x5EED_2026)
        let pieces: [[UInt8]] = [
            Array("hello".utf8), Array("κόσμε".utf8), [0xED, 0xA0, 0x80], [0xF0, 0x9F, 0x98, 0x80], [0xFF], [],
            [UInt8](repeating: 0x41, count: 130), [0xC2],
        ]
        for iteration in 0..<20_000 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...5, using: &rng) {
                let opcode = [0, 1, 2, 8, 9, 10, 3, 1, 2][Int.random(in: 0..<9, using: &rng)]
                var payload = pieces[Int.random(in: 0..<pieces.count, using: &rng)]
                if opcode == 8 && Bool.random(using: &rng) { payload = [0x03, 0xE8] + payload.prefix(20) }
                stream += frame(UInt8(opcode), payload, fin: Int.random(in: 0..<4, using: &rng) != 0,
                                rsv: Int.random(in: 0..<10, using: &rng) == 0 ? 4 : 0,
                                mask: [UInt8.random(in: 0...255, using: &rng), 0x5A, 0xA5, UInt8.random(in: 0...255, using: &rng)])
            }
            for _ in 0..<Int.random(in: 0...3, using: &rng) where !stream.isEmpty {
                stream[Int.random(in: 0..<stream.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let deflate: PerMessageDeflateParameters? = iteration % 3 == 0 ? PerMessageDeflateParameters() : nil
            let events = run(stream, chunk: Int.random(in: 1...16, using: &rng),
                             limits: WebSocketLimits(maxFrameBytes: 1 << 16, maxMessageBytes: 1 << 16, maxFragments: 8),
                             deflate: deflate)
            for (index, event) in events.enumerated() {
                switch event {
                case .text(let bytes):
                    #expect(String(validating: bytes, as: UTF8.self) != nil)
                case .closed, .failed:
                    #expect(index == events.count - 1, "events after the end: \(events)")
                case .write(let bytes):
                    #expect(bytes.count >= 2 && bytes[0] & 0x70 == 0)
                default:
                    break
                }
                if case .failed = event {
                    guard index > 0, case .write(let close) = events[index - 1] else {
                        Issue.record("failure without close frame: \(events)")
                        continue
                    }
                    #expect(close[0] == 0x88)
                }
            }
        }
    }
}
