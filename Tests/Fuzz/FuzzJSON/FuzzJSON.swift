import FuzzSupport
import SwitchboardJSON

/// libFuzzer entry for the strict JSON reader (the network-facing half of SwitchboardJSON:
/// WebSocket messages, REST bodies and JWT segments reach it unfiltered). Checks the reader's
/// contract, not just "no crash": every reported range lies inside the input and re-parses as
/// the kind it was reported as; every string decodes and survives a JSONWriter round trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let maxDepth = 16
    guard let members = try? JSONReader.parseObject(input, maxDepth: maxDepth) else { return 0 }
    for member in members.values {
        check(input, kind: member.kind, range: member.range, depthLeft: maxDepth - 1)
    }
    return 0
}

private func check(_ input: UnsafeBufferPointer<UInt8>, kind: JSONKind, range: Range<Int>, depthLeft: Int) {
    precondition(range.lowerBound >= 0 && range.upperBound <= input.count && !range.isEmpty, "range outside the input")
    switch kind {
    case .object:
        let inner = try? JSONReader.parseObject(input, in: range, maxDepth: depthLeft)
        precondition(inner != nil, "a reported object must re-parse")
        for m in inner! { check(input, kind: m.value.kind, range: m.value.range, depthLeft: depthLeft - 1) }
    case .array:
        let inner = try? JSONReader.parseArray(input, in: range, maxDepth: depthLeft)
        precondition(inner != nil, "a reported array must re-parse")
        for e in inner! { check(input, kind: e.kind, range: e.range, depthLeft: depthLeft - 1) }
    case .string:
        let decoded = try? JSONReader.decodeString(input, range)
        precondition(decoded != nil, "a validated string must decode")
        var w = JSONWriter()
        w.string("s", decoded!)
        let written = w.finishBytes()
        written.withUnsafeBufferPointer { buf in
            let again = try? JSONReader.parseObject(buf, maxDepth: 1)
            precondition(again != nil, "the writer's output must parse")
            precondition((try? JSONReader.decodeString(buf, again!["s"]!.range)) == decoded, "string round trip")
        }
    case .number:
        if let v = JSONReader.safeInteger(input, range) {
            precondition(abs(v) <= 9_007_199_254_740_991)
        }
        _ = JSONReader.truncatedInteger(input, range)
    case .bool, .null:
        break
    }
}

// SwiftPM renames this target's main to FuzzJSON_main; libFuzzer's driver runs from it (FuzzSupport).
@_cdecl("FuzzJSON_main")
public func fuzzJSONMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzDriver(argc, argv, fuzzJSON)
}
