import SwitchboardWebSocket

/// Equatable mirror of ``WebSocketEvent`` for assertions.
enum Event: Equatable, CustomStringConvertible {
    case text([UInt8]), binary([UInt8]), write([UInt8]), pong([UInt8])
    case closed(UInt16, String), failed(UInt16)

    /// `scratch`: the buffer given to `receive(_:maxMessages:scratch:_:)`, for `.inScratch`.
    init(_ event: WebSocketEvent, scratch: UnsafeMutableRawBufferPointer? = nil) {
        switch event {
        case .text(let s): self = .text(Array(s.utf8))
        case .binary(let b): self = .binary(b)
        case .textBytes(let b): self = .text(b)
        case .inScratch(let opcode, let count):
            let bytes = Array(UnsafeRawBufferPointer(rebasing: scratch![..<count]))
            self = opcode == .text ? .text(bytes) : .binary(bytes)
        case .write(let b): self = .write(b)
        case .pong(let b): self = .pong(b)
        case .closed(let code, let reason): self = .closed(code, reason)
        case .failed(let code, _): self = .failed(code)
        }
    }

    var description: String {
        switch self {
        case .text(let b): return "text(\(b.count))"
        case .binary(let b): return "binary(\(b.count))"
        case .write(let b): return "write(\(b))"
        case .pong(let b): return "pong(\(b))"
        case .closed(let c, let r): return "closed(\(c), \(r))"
        case .failed(let c): return "failed(\(c))"
        }
    }
}

let testMask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]

/// How the payload length is encoded in a test frame.
enum LengthForm { case minimal, sixteen, sixtyFour }

/// A client frame: masked unless `masked` is false. `first` is the raw first byte when given.
func frame(
    _ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0, masked: Bool = true,
    mask: [UInt8] = testMask, form: LengthForm = .minimal
) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
    let maskBit: UInt8 = masked ? 0x80 : 0
    let n = payload.count
    switch form {
    case .minimal where n < 126:
        out.append(maskBit | UInt8(n))
    case .minimal where n <= 0xFFFF, .sixteen:
        out.append(maskBit | 126)
        out += [UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    default:
        out.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(UInt64(n) >> UInt64(shift) & 0xFF)) }
    }
    if masked {
        out += mask
        for (i, b) in payload.enumerated() { out.append(b ^ mask[i & 3]) }
    } else {
        out += payload
    }
    return out
}

func text(_ s: String, fin: Bool = true) -> [UInt8] { frame(1, Array(s.utf8), fin: fin) }

/// Expected server close frame bytes (unmasked) for `code` with the codec's reason text ignored:
/// compares only the header and code, so this returns the prefix to check.
func closeCode(ofWrite bytes: [UInt8]) -> UInt16? {
    guard bytes.count >= 4, bytes[0] == 0x88 else { return nil }
    return UInt16(bytes[2]) << 8 | UInt16(bytes[3])
}

/// Feeds `input` to a fresh or given connection, whole or one byte at a time, collecting events.
func run(_ input: [UInt8], byteByByte: Bool = false, chunk: Int? = nil, connection: inout WebSocketConnection) -> [Event] {
    var events: [Event] = []
    let size = byteByByte ? 1 : (chunk ?? max(input.count, 1))
    var index = 0
    while index < input.count {
        let end = min(index + size, input.count)
        input[index..<end].withUnsafeBytes { bytes in
            connection.receive(bytes) { events.append(Event($0)) }
        }
        index = end
    }
    return events
}

func run(_ input: [UInt8], byteByByte: Bool = false, chunk: Int? = nil,
         limits: WebSocketLimits = WebSocketLimits(), deflate: PerMessageDeflateParameters? = nil) -> [Event] {
    var connection = WebSocketConnection(limits: limits, deflate: deflate)
    return run(input, byteByByte: byteByByte, chunk: chunk, connection: &connection)
}

/// As `run`, but as the server's driver reads: `receiveWholeMessage` first (unless
/// `wholeFirst` is false), else one message per `receive` call, with a scratch buffer of
/// `scratchBytes` for the messages whole in a read. Also returns how many were lent (by
/// `receiveWholeMessage` or as `.inScratch`).
func runLending(_ input: [UInt8], chunk: Int? = nil, scratchBytes: Int = 65_536, limits: WebSocketLimits = WebSocketLimits(),
                deflate: PerMessageDeflateParameters? = nil, wholeFirst: Bool = true) -> (events: [Event], lent: Int) {
    var connection = WebSocketConnection(limits: limits, deflate: deflate)
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(scratchBytes, 1), alignment: 16)
    defer { scratch.deallocate() }
    let lendable = UnsafeMutableRawBufferPointer(rebasing: scratch[..<scratchBytes])
    var events: [Event] = []
    var lent = 0
    let size = chunk ?? max(input.count, 1)
    var index = 0
    while index < input.count {
        let end = min(index + size, input.count)
        var offset = index
        while offset < end {
            // Overwritten between calls, as the driver's is by the next message.
            scratch.initializeMemory(as: UInt8.self, repeating: 0xEE)
            offset += input[offset..<end].withUnsafeBytes { bytes in
                if wholeFirst, let whole = connection.receiveWholeMessage(bytes, scratch: lendable) {
                    lent += 1
                    events.append(Event(.inScratch(whole.opcode, count: whole.count), scratch: lendable))
                    return whole.used
                }
                return connection.receive(bytes, maxMessages: 1, scratch: lendable) { event in
                    if case .inScratch = event { lent += 1 }
                    events.append(Event(event, scratch: lendable))
                }
            }
        }
        index = end
    }
    return (events, lent)
}
