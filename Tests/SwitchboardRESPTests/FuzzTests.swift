import Testing
@testable import SwitchboardRESP

@Suite struct FuzzTests {
    // Small limits so that mutated and generated inputs actually reach every limit.
    private static let limits = RESPLimits(maxBulkBytes: 48, maxLineBytes: 24, maxAggregateCount: 6, maxDepth: 4, maxValueBytes: 512)

    private static let seeds: [[UInt8]] = [
        "+OK\r\n", "-ERR x\r\n", ":-12\r\n", "$5\r\nhello\r\n", "$-1\r\n", "*-1\r\n", "_\r\n", "#t\r\n", ",1.5e3\r\n",
        ",-inf\r\n", "(123456789012345678901234\r\n", "!3\r\nERR\r\n", "=8\r\ntxt:abcd\r\n",
        "*3\r\n:1\r\n%1\r\n+k\r\n$1\r\nv\r\n~2\r\n#f\r\n_\r\n",
        "|1\r\n+key\r\n,0.5\r\n*2\r\n:1\r\n:2\r\n",
        ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n",
    ].map { Array($0.utf8) }

    private static let tokens: [[UInt8]] = [
        "\r\n", "\r", "\n", "-1", "0", "?", "*", "$", "%", "|", ">", "~", "=", "!", "(", ",", "#", "_", ":", "+",
        "99999999999999999999", "*1\r\n", "$3\r\n", "txt:", "inf", "nan", "\u{0}", "\u{FF}",
    ].map { Array($0.utf8) }

    private func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var out = input
        for _ in 0..<(1 + rng.below(4)) {
            switch rng.below(6) {
            case 0 where !out.isEmpty:
                out[rng.below(out.count)] = UInt8(truncatingIfNeeded: rng.next())
            case 1 where !out.isEmpty:
                let start = rng.below(out.count)
                out.removeSubrange(start..<min(out.count, start + 1 + rng.below(8)))
            case 2:
                out.insert(contentsOf: Self.tokens[rng.below(Self.tokens.count)], at: rng.below(out.count + 1))
            case 3 where !out.isEmpty:
                let start = rng.below(out.count)
                let slice = out[start..<min(out.count, start + 1 + rng.below(32))]
                out.insert(contentsOf: slice, at: rng.below(out.count + 1))
            case 4:
                out += Self.seeds[rng.below(Self.seeds.count)]
            default:
                for _ in 0..<(1 + rng.below(8)) {
                    out.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(out.count + 1))
                }
            }
        }
        return out
    }

    /// A random value within `depth` levels (no NaN: it never equals itself).
    private func randomValue(_ rng: inout SplitMix64, depth: Int) -> RESPValue {
        let kinds = depth > 0 ? 15 : 10
        func text() -> String { String((0..<rng.below(12)).map { _ in Character(UnicodeScalar(UInt8(0x21 + rng.below(90)))) }) }
        func blob() -> [UInt8] { (0..<rng.below(40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        func items() -> [RESPValue] { (0..<rng.below(5)).map { _ in randomValue(&rng, depth: depth - 1) } }
        func entries() -> [RESPMapEntry] { (0..<rng.below(3)).map { _ in RESPMapEntry(key: randomValue(&rng, depth: depth - 1), value: randomValue(&rng, depth: depth - 1)) } }
        switch rng.below(kinds) {
        case 0: return .simpleString(text())
        case 1: return .simpleError(text())
        case 2: return .integer(Int64(bitPattern: rng.next()) >> rng.below(64))
        case 3: return .bulkString(blob())
        case 4: return .null
        case 5: return .boolean(rng.below(2) == 0)
        case 6:
            let d = Double(bitPattern: rng.next())
            return .double(d.isNaN ? 0.5 : d)
        case 7: return .bigNumber((rng.below(2) == 0 ? "-" : "") + String(rng.next()) + String(rng.next()))
        case 8: return .bulkError(blob())
        case 9: return .verbatimString(format: "txt", text: blob())
        case 10: return .array(items())
        case 11: return .map(entries())
        case 12: return .set(items())
        case 13: return .attribute(entries(), randomValue(&rng, depth: depth - 1))
        default: return .array(items())
        }
    }

    @Test func mutatedAndRandomInputs() {
        var rng = SplitMix64(state: 0x5EED_0123)
        let corpus = Self.seeds + badInputs.map(\.raw).filter { $0.count < 400 }
        var values = 0
        var errors = 0
        for iteration in 0..<20_000 {
            let input: [UInt8]
            if iteration % 10 == 0 {
                input = (0..<rng.below(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                let base = rng.below(2) == 0 ? Self.seeds[rng.below(Self.seeds.count)] : corpus[rng.below(corpus.count)]
                input = mutate(base, &rng)
            }
            let whole = parseWhole(input, limits: Self.limits)
            let chunks = (0..<4).map { _ in 1 + rng.below(16) }
            let split = parseSplit(input, chunks: chunks, limits: Self.limits)
            // NaN never equals itself: compare the written forms instead of the values.
            if describe(whole) != describe(split) {
                Issue.record("split-dependent result at iteration \(iteration) chunks \(chunks): \(input)\n\(whole)\n\(split)")
                return
            }
            for e in whole {
                if case .error = e { errors += 1 } else { values += 1 }
            }
        }
        // The fuzzer must exercise both outcomes to mean anything.
        #expect(values > 2_000, "values: \(values)")
        #expect(errors > 5_000, "errors: \(errors)")
        print("RESP fuzz: \(values) values, \(errors) errors")
    }

    @Test func generatedValuesRoundTrip() {
        var rng = SplitMix64(state: 0xC0DE)
        for iteration in 0..<3_000 {
            // Pushes only at the top level (randomValue never nests one).
            var value = randomValue(&rng, depth: 3)
            if rng.below(5) == 0 { value = .push([value, randomValue(&rng, depth: 2)]) }
            var out: [UInt8] = []
            RESPWriter.write(value, into: &out)
            let whole = parseWhole(out)
            let split = parseSplit(out, chunks: [1 + rng.below(7), 1 + rng.below(3)])
            if whole != [.value(value)] || split != whole {
                Issue.record("round trip \(iteration): \(value)\n\(whole)\n\(split)")
                return
            }
        }
    }

    private func describe(_ events: [Event]) -> [String] {
        events.map { event in
            guard case .value(let v) = event else { return "\(event)" }
            var out: [UInt8] = []
            RESPWriter.write(v, into: &out)
            return String(decoding: out, as: UTF8.self)
        }
    }
}
