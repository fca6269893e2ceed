import FuzzSupport
import SwitchboardWebSocket

/// One event as both decoding paths report it (a message's bytes, whichever form it came in).
enum Seen: Equatable {
    case message(text: Bool, bytes: [UInt8])
    case write([UInt8])
    case pong([UInt8])
    case closed(UInt16, String)
    case failed(UInt16, String)
}

/// libFuzzer entry for the WebSocket frame decoder (with and without permessage-deflate):
/// the input is a client byte stream fed in two pieces. Checks: the codec's UTF-8 validator
/// agrees with Swift's on the raw input, no event follows .closed/.failed, delivered messages
/// respect the limits, and the shard's path (`receiveWholeMessage` first, then `receive` one
/// message and a few frames at a time into a scratch buffer, as `WebSocketConnectionDriver`
/// calls them) reports exactly what plain `receive` reports, event for event.
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
    let split = 2 + Int(data[1]) % max(1, size - 2)
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let pieces = [input[2..<min(split, size)], input[min(split, size)...]]

    // Plain `receive`, every piece whole.
    var plain = WebSocketConnection(limits: limits, deflate: deflate)
    var plainSeen: [Seen] = []
    var ended = false
    for piece in pieces {
        plain.receive(UnsafeRawBufferPointer(rebasing: piece)) { event in
            precondition(!ended, "event after the connection ended")
            switch event {
            case .text(let text):
                // A String is valid UTF-8 by construction; what the codec's validator accepted
                // is checked against Swift's own above.
                precondition(text.utf8.count <= limits.maxMessageBytes)
                plainSeen.append(.message(text: true, bytes: Array(text.utf8)))
            case .binary(let bytes):
                precondition(bytes.count <= limits.maxMessageBytes)
                plainSeen.append(.message(text: false, bytes: bytes))
            case .closed(let code, let reason):
                ended = true
                plainSeen.append(.closed(code, reason))
            case .failed(let code, let reason):
                ended = true
                plainSeen.append(.failed(code, reason))
            case .write(let bytes):
                plainSeen.append(.write(bytes))
            case .pong(let bytes):
                plainSeen.append(.pong(bytes))
            case .inScratch:
                preconditionFailure("no scratch buffer was passed")
            case .textBytes:
                preconditionFailure("the plain codec's settings keep assembled text a String")
            }
        }
    }

    // The driver's path: the whole-message fast path, else one message into the scratch buffer.
    // With the broker's setting: assembled text is handed over as its bytes (`.textBytes`).
    let shardSettings = WebSocketCodecSettings(limits: limits, textAsBytes: true)
    var shard = WebSocketConnection(settings: shardSettings, deflate: deflate)
    var shardSeen: [Seen] = []
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
    defer { scratch.deallocate() }
    func lent(_ opcode: WebSocketOpcode, _ count: Int) -> Seen {
        precondition(count <= scratch.count && count <= limits.maxMessageBytes)
        let bytes = Array(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
        if opcode == .text {
            precondition(String(validating: bytes, as: UTF8.self) != nil, "invalid text lent from the scratch buffer")
        }
        return .message(text: opcode == .text, bytes: bytes)
    }
    // The driver bounds frames per call (64); here 1...4, from the input, so that calls stop
    // between the frames of every stream the fuzzer makes.
    let maxFrames = 1 + Int(data[1] >> 6)
    var framesEvents = 0
    for piece in pieces {
        var rest = UnsafeRawBufferPointer(rebasing: piece)
        var rounds = 0
        while !rest.isEmpty {
            rounds += 1
            precondition(rounds <= size + 2, "no progress")
            if let whole = shard.receiveWholeMessage(rest, scratch: scratch) {
                precondition(whole.used > 0 && whole.used <= rest.count)
                shardSeen.append(lent(whole.opcode, whole.count))
                rest = UnsafeRawBufferPointer(rebasing: rest[whole.used...])
                continue
            }
            let used = shard.receive(rest, maxMessages: 1, maxFrames: maxFrames, scratch: scratch) { event in
                framesEvents += 1
                switch event {
                case .text(let text): shardSeen.append(.message(text: true, bytes: Array(text.utf8)))
                case .binary(let bytes): shardSeen.append(.message(text: false, bytes: bytes))
                case .textBytes(let bytes):
                    precondition(bytes.count <= limits.maxMessageBytes)
                    precondition(String(validating: bytes, as: UTF8.self) != nil, "invalid text handed over as bytes")
                    shardSeen.append(.message(text: true, bytes: bytes))
                case .inScratch(let opcode, let count): shardSeen.append(lent(opcode, count))
                case .closed(let code, let reason): shardSeen.append(.closed(code, reason))
                case .failed(let code, let reason): shardSeen.append(.failed(code, reason))
                case .write(let bytes): shardSeen.append(.write(bytes))
                case .pong(let bytes): shardSeen.append(.pong(bytes))
                }
            }
            precondition(framesEvents <= maxFrames + 2, "\(framesEvents) events from a call bounded to \(maxFrames) frames")
            framesEvents = 0
            precondition(used >= 0 && used <= rest.count)
            if used == 0 { precondition(!shard.isOpen || rest.isEmpty, "receive used nothing of an open connection's input"); break }
            rest = UnsafeRawBufferPointer(rebasing: rest[used...])
        }
    }
    precondition(plainSeen == shardSeen, "the driver's path and plain receive disagree: \(plainSeen) vs \(shardSeen)")
    return 0
}

// SwiftPM renames this target's main to FuzzWebSocket_main; libFuzzer's driver runs from it (FuzzSupport).
@_cdecl("FuzzWebSocket_main")
public func fuzzWebSocketMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzDriver(argc, argv, fuzzWebSocket)
}
