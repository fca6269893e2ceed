import FuzzSupport
import SwitchboardHTTP

/// libFuzzer entry for the HTTP/1.1 request parser. The input is fed in two pieces (split
/// where its first byte says) to exercise the incremental paths, and the parser's contract is
/// checked: never consume more than given, stop after an error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let limits = HTTPLimits(maxRequestLineBytes: 256, maxHeaderBytes: 1024, maxHeaderCount: 16, maxBodyBytes: 4096, maxChunkLineBytes: 64)
    var parser = HTTPRequestParser(limits: limits)
    let split = Int(data[0]) % size
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var requests = 0
    for piece in [input[1..<max(1, split)], input[max(1, split)...]] {
        var rest = UnsafeRawBufferPointer(rebasing: piece)
        while true {
            let (consumed, result) = parser.parse(rest)
            precondition(consumed >= 0 && consumed <= rest.count, "consumed out of range")
            rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
            switch result {
            case .needMore:
                precondition(rest.isEmpty, "needMore must consume everything")
            case .expectContinue:
                continue
            case .request(let r):
                requests += 1
                precondition(r.body.count <= limits.maxBodyBytes)
                if !rest.isEmpty { continue }
            case .error(let e):
                precondition([400, 413, 414, 431, 501, 505].contains(e.status))
                return 0
            }
            break
        }
    }
    return 0
}

// SwiftPM renames this target's main to FuzzHTTP_main; libFuzzer's driver runs from it (FuzzSupport).
@_cdecl("FuzzHTTP_main")
public func fuzzHTTPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzDriver(argc, argv, fuzzHTTP)
}
