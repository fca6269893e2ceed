import SwitchboardWebSocket

/// libFuzzer entry for the WebSocket frame decoder (with and without permessage-deflate):
/// the input is a client byte stream fed in two pieces. Checks: the codec's UTF-8 validator
/// agrees with Swift's on the raw input, no event follows .closed/.failed, delivered messages
/// respect the limits.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let limits = WebSocketLimits(maxFrameBytes: 4096, maxMessageBytes: 8192, maxFragments: 64)
    let deflate: PerMessageDeflateParameters? = data[0] & 1 == 1
        ? PerMessageDeflateParameters(serverNoContextTakeover: false, clientNoContextTakeover: data[0] & 2 == 2,
                                      serverMaxWindowBits: 15, clientMaxWindowBits: 15)
        : nil
    // The codec's validator decides what becomes a String (invalid bytes fail the connection
    // before any String is made): it must agree with Swift's strict UTF-8 decoding.
    var checker = UTF8Validator()
    let accepted = checker.validate(UnsafeRawBufferPointer(start: data, count: size)) && checker.isComplete
    precondition(accepted == (String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) != nil),
                 "UTF8Validator and Swift disagree")
    var connection = WebSocketConnection(limits: limits, deflate: deflate)
    let split = 2 + Int(data[1]) % max(1, size - 2)
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var ended = false
    for piece in [input[2..<min(split, size)], input[min(split, size)...]] {
        connection.receive(UnsafeRawBufferPointer(rebasing: piece)) { event in
            precondition(!ended, "event after the connection ended")
            switch event {
            case .text(let text):
                // A String is valid UTF-8 by construction; what the codec's validator accepted
                // is checked against Swift's own below.
                precondition(text.utf8.count <= limits.maxMessageBytes)
            case .binary(let bytes):
                precondition(bytes.count <= limits.maxMessageBytes)
            case .closed, .failed:
                ended = true
            case .write, .pong:
                break
            case .inScratch:
                preconditionFailure("no scratch buffer was passed")
            }
        }
    }
    return 0
}

// SwiftPM links executables with main renamed to <Target>_main; run libFuzzer's driver from it.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzWebSocket_main")
public func fuzzWebSocketMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector, fuzzWebSocket)
}
