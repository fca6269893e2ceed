import Testing
@testable import SwitchboardRESP

enum Event: Equatable, CustomStringConvertible {
    case value(RESPValue)
    case error(RESPParseError)

    var description: String {
        switch self {
        case .value(let v): return "value(\(v))"
        case .error(let e): return "error(\(e))"
        }
    }
}

/// Feeds `chunk` to `parser`, re-calling after each complete value, and records what happened.
/// Checks the parser's contract on every call. Returns false once an error was reported.
@discardableResult
func feed(_ parser: inout RESPParser, _ chunk: ArraySlice<UInt8>, events: inout [Event]) -> Bool {
    Array(chunk).withUnsafeBytes { raw in
        var offset = 0
        while true {
            let slice = UnsafeRawBufferPointer(rebasing: raw[offset...])
            let (consumed, result) = parser.parse(slice)
            #expect(consumed >= 0 && consumed <= slice.count)
            offset += consumed
            switch result {
            case .needMore:
                #expect(offset == raw.count, "needMore must consume everything")
                return true
            case .value(let v):
                events.append(.value(v))
                #expect(consumed > 0, "a value takes at least one byte of this call or earlier ones")
                if offset == raw.count { return true }
            case .error(let e):
                events.append(.error(e))
                return false
            }
        }
    }
}

/// Events from feeding `bytes` in pieces of the given sizes (cycled).
func parseSplit(_ bytes: [UInt8], chunks: [Int], limits: RESPLimits = RESPLimits()) -> [Event] {
    var parser = RESPParser(limits: limits)
    var events: [Event] = []
    var position = 0
    var i = 0
    while position < bytes.count {
        let end = min(bytes.count, position + max(1, chunks[i % chunks.count]))
        i += 1
        if !feed(&parser, bytes[position..<end], events: &events) { break }
        position = end
    }
    return events
}

func parseWhole(_ bytes: [UInt8], limits: RESPLimits = RESPLimits()) -> [Event] {
    parseSplit(bytes, chunks: [max(1, bytes.count)], limits: limits)
}

func parseByteByByte(_ bytes: [UInt8], limits: RESPLimits = RESPLimits()) -> [Event] {
    parseSplit(bytes, chunks: [1], limits: limits)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The single value `raw` parses to, checked identical whole and byte by byte.
func single(_ raw: String, limits: RESPLimits = RESPLimits()) -> RESPValue? {
    single(bytes(raw), limits: limits)
}

func single(_ raw: [UInt8], limits: RESPLimits = RESPLimits()) -> RESPValue? {
    let whole = parseWhole(raw, limits: limits)
    let split = parseByteByByte(raw, limits: limits)
    #expect(whole == split, "whole and byte-by-byte differ:\n\(whole)\n\(split)")
    #expect(whole.count == 1, "expected one event, got \(whole)")
    if case .value(let v)? = whole.first { return v }
    return nil
}

/// The error `raw` produces, whole and byte by byte.
func errorOf(_ raw: [UInt8], limits: RESPLimits = RESPLimits()) -> (whole: RESPParseError?, split: RESPParseError?) {
    func firstError(_ events: [Event]) -> RESPParseError? {
        for e in events { if case .error(let x) = e { return x } }
        return nil
    }
    return (firstError(parseWhole(raw, limits: limits)), firstError(parseByteByByte(raw, limits: limits)))
}

func bulk(_ s: String) -> RESPValue { .bulkString(Array(s.utf8)) }
func entry(_ k: RESPValue, _ v: RESPValue) -> RESPMapEntry { RESPMapEntry(key: k, value: v) }

/// SplitMix64: tiny, fast and deterministic, so failures reproduce from the iteration number.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}
