import FuzzSupport
import SwitchboardRESP

/// Parses `input` in pieces, checking the parser's contract after every call. Returns what was
/// parsed, each value in its written form (NaN never equals itself; its written form does).
private func run(_ input: UnsafeRawBufferPointer, split: Int, limits: RESPLimits) -> [[UInt8]] {
    var parser = RESPParser(limits: limits)
    var out: [[UInt8]] = []
    for piece in [input[0..<split], input[split...]] {
        var rest = UnsafeRawBufferPointer(rebasing: piece)
        while !rest.isEmpty {
            let (consumed, result) = parser.parse(rest)
            precondition(consumed >= 0 && consumed <= rest.count, "consumed out of range")
            rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
            switch result {
            case .needMore:
                precondition(rest.isEmpty, "needMore must consume everything")
            case .value(let value):
                var written: [UInt8] = []
                RESPWriter.write(value, into: &written)
                precondition(written.count <= limits.maxValueBytes * 3, "a value re-encodes to at most 3x its wire size (invalid UTF-8 becomes U+FFFD)")
                out.append(written)
            case .error(let error):
                out.append(Array("error \(error)".utf8))
                return out
            }
        }
    }
    return out
}

/// libFuzzer entry for the RESP3 parser. The input is parsed whole and split where its first byte
/// says; both must give the same values, and every value must survive a write/parse round trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let limits = RESPLimits(maxBulkBytes: 512, maxLineBytes: 64, maxAggregateCount: 32, maxDepth: 8, maxValueBytes: 4096)
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let whole = run(input, split: input.count, limits: limits)
    let split = run(input, split: Int(data[0]) % input.count, limits: limits)
    precondition(whole == split, "the result depends on where the stream was split")
    for written in whole where !written.starts(with: Array("error ".utf8)) {
        let again = written.withUnsafeBytes { run($0, split: $0.count, limits: RESPLimits()) }
        precondition(again == [written], "round trip changed a value")
    }
    return 0
}

// SwiftPM renames this target's main to FuzzRESP_main; libFuzzer's driver runs from it (FuzzSupport).
@_cdecl("FuzzRESP_main")
public func fuzzRESPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzDriver(argc, argv, fuzzRESP)
}
