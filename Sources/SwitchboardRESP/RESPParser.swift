#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Incremental, strict RESP3 parser (RESP2 is a subset: its null bulk string `$-1` and null
/// array `*-1` parse as ``RESPValue/null``). No I/O: the caller feeds bytes as they arrive.
///
/// Feed any split of the byte stream, down to one byte at a time: the result never depends on
/// where the stream was split. ``parse(_:)`` stops right after one complete top-level value and
/// reports how many bytes it consumed; call it again with the rest.
///
/// Anything the protocol does not define is rejected rather than repaired (bare LF, a CR inside a
/// simple string, a length with a sign or leading zero, `-1` where no null exists, streamed
/// strings Redis never sends), because a stream that was misread once stays misaligned.
///
/// Every length, count and depth is checked against ``RESPLimits`` when it is declared, before
/// anything is buffered for it; see ``RESPLimits`` for the resulting memory bound.
public struct RESPParser: Sendable {
    enum State: Sendable, Equatable {
        /// Expecting the type byte of a value.
        case typeByte
        /// Inside the CRLF-terminated line after the type byte: the whole of a simple value, or
        /// the length of a bulk value or the count of an aggregate.
        case line(RESPType)
        /// Receiving the payload of a bulk string, bulk error or verbatim string.
        case payload(RESPType, remaining: Int)
        /// Expecting the CR, then the LF, that end a payload.
        case payloadCR(RESPType)
        case payloadLF(RESPType)
        /// Terminal: framing is lost after an error.
        case poisoned(RESPParseError)
    }

    /// The type byte of each value, RESP2 and RESP3.
    enum RESPType: UInt8, Sendable {
        case simpleString = 0x2B  // +
        case simpleError = 0x2D  // -
        case integer = 0x3A  // :
        case bulkString = 0x24  // $
        case array = 0x2A  // *
        case null = 0x5F  // _
        case boolean = 0x23  // #
        case double = 0x2C  // ,
        case bigNumber = 0x28  // (
        case bulkError = 0x21  // !
        case verbatimString = 0x3D  // =
        case map = 0x25  // %
        case set = 0x7E  // ~
        case attribute = 0x7C  // |
        case push = 0x3E  // >

        var isBulk: Bool { self == .bulkString || self == .bulkError || self == .verbatimString }
        var isAggregate: Bool { self == .array || self == .map || self == .set || self == .attribute || self == .push }
    }

    /// An aggregate being filled.
    struct Frame: Sendable {
        enum Kind: Sendable {
            case array, set, push, map, attribute
            /// An attribute map is complete; the next value is the one it describes.
            case attributed([RESPMapEntry])
        }
        var kind: Kind
        /// Elements still expected (maps and attributes: keys and values counted separately).
        var remaining: Int
        var items: [RESPValue]
    }

    /// Streamed strings (`$?`) and aggregates (`*?`) use these as chunk and end markers.
    static let streamedChunkByte: UInt8 = 0x3B  // ;
    static let streamedEndByte: UInt8 = 0x2E  // .
    /// Reserve at most this much for a declared payload or aggregate up front: a declared length
    /// costs the peer nothing until the bytes arrive.
    static let maxPayloadReservation = 64 * 1024
    static let maxElementReservation = 1024
    /// The smallest value on the wire (`_\r\n`): an aggregate of n elements needs at least 3n more bytes.
    static let minimumValueBytes = 3

    private let limits: RESPLimits
    private(set) var state: State = .typeByte
    /// The line received so far (content and, at its end, the CR and LF).
    private var line: [UInt8] = []
    /// The payload received so far.
    private var payload: [UInt8] = []
    /// Open aggregates, outermost first.
    private var stack: [Frame] = []
    /// Wire bytes of the current top-level value accounted so far (payloads when declared).
    private var valueBytes = 0

    /// Creates a parser enforcing `limits` (which must pass ``RESPLimits/validate()``).
    public init(limits: RESPLimits = RESPLimits()) {
        precondition(limits.validate() == nil, "invalid RESPLimits: \(limits.validate() ?? "")")
        self.limits = limits
    }

    /// True while part of a value has been received but it is not complete.
    public var hasPartialValue: Bool {
        switch state {
        case .typeByte: return !stack.isEmpty
        case .poisoned: return false
        default: return true
        }
    }

    /// Bytes currently buffered for the value in progress (for tests and accounting); bounded by
    /// ``RESPLimits/maxValueBytes``.
    var bufferedByteCount: Int { line.count + payload.count }

    /// Aggregates currently open, attribute wrappers excluded.
    private var depth: Int {
        var d = 0
        for frame in stack {
            if case .attributed = frame.kind { continue }
            d &+= 1
        }
        return d
    }

    /// Parses as much of `bytes` as belongs to the current top-level value.
    ///
    /// - Returns: how many bytes were consumed and what happened. After `.value`, unconsumed
    ///   bytes belong to the next value. After `.error`, the parser stays poisoned.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> (consumed: Int, result: RESPParseResult) {
        if case .poisoned(let error) = state { return (0, .error(error)) }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return (0, .needMore) }
        let input = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        var offset = 0
        while offset < input.count {
            // What is held never exceeds the limits, whatever was fed.
            assert(line.count <= limits.maxLineBytes &+ 2, "line buffer over its limit")
            assert(payload.count <= limits.maxBulkBytes, "payload buffer over its limit")
            assert(valueBytes <= limits.maxValueBytes, "value budget overspent")
            switch state {
            case .poisoned(let error):
                return (offset, .error(error))

            case .typeByte:
                let byte = input[offset]
                offset &+= 1
                guard let type = RESPType(rawValue: byte) else {
                    let error: RESPParseError = byte == Self.streamedChunkByte || byte == Self.streamedEndByte
                        ? .streamingUnsupported : .invalidTypeByte(byte)
                    return fail(error, offset)
                }
                if type == .push, stack.contains(where: { if case .attributed = $0.kind { return false } else { return true } }) {
                    return fail(.nestedPush, offset)
                }
                state = .line(type)

            case .line(let type):
                switch takeLine(input, &offset) {
                case .needMore: return (offset, .needMore)
                case .failure(let error): return fail(error, offset)
                case .line(let count):
                    // The type byte and the line, CRLF included, now count toward the value.
                    valueBytes &+= 1 &+ count &+ 2
                    if valueBytes > limits.maxValueBytes { return fail(.valueTooLarge, offset) }
                    let outcome: LineOutcome
                    do {
                        // A second reference to the storage lets lineValue mutate self without an
                        // overlapping access; it ends with this block, before the line is cleared.
                        let bytes = line
                        outcome = bytes.withUnsafeBufferPointer { b in
                            lineValue(type, UnsafeBufferPointer(rebasing: b[0..<count]))
                        }
                    }
                    line.removeAll(keepingCapacity: line.capacity <= 256)
                    switch outcome {
                    case .failure(let error): return fail(error, offset)
                    case .pending: continue
                    case .value(let value):
                        if let top = complete(value) { return (offset, .value(top)) }
                    }
                }

            case .payload(let type, let remaining):
                let n = min(remaining, input.count &- offset)
                payload.append(contentsOf: UnsafeBufferPointer(rebasing: input[offset..<(offset &+ n)]))
                offset &+= n
                state = n == remaining ? .payloadCR(type) : .payload(type, remaining: remaining &- n)

            case .payloadCR(let type):
                guard input[offset] == ASCII.cr else { return fail(.invalidFraming, offset &+ 1) }
                offset &+= 1
                state = .payloadLF(type)

            case .payloadLF(let type):
                guard input[offset] == ASCII.lf else { return fail(.invalidFraming, offset &+ 1) }
                offset &+= 1
                var bytes: [UInt8] = []
                swap(&bytes, &payload)
                let value: RESPValue
                switch type {
                case .bulkString: value = .bulkString(bytes)
                case .bulkError: value = .bulkError(bytes)
                default:
                    assert(type == .verbatimString)
                    // Length >= 4 was checked when it was declared. The format is printable
                    // ASCII ("txt", "mkd"), so it reads back as the same three-byte string.
                    guard bytes[3] == ASCII.colon,
                          bytes[0..<3].allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != ASCII.colon })
                    else { return fail(.invalidVerbatim, offset) }
                    value = .verbatimString(format: String(decoding: bytes[0..<3], as: UTF8.self), text: Array(bytes[4...]))
                }
                if let top = complete(value) { return (offset, .value(top)) }
            }
        }
        return (offset, .needMore)
    }

    // MARK: - Results

    private mutating func fail(_ error: RESPParseError, _ consumed: Int) -> (consumed: Int, result: RESPParseResult) {
        state = .poisoned(error)
        // Nothing buffered can be used any more; give the memory back now.
        line = []
        payload = []
        stack = []
        return (consumed, .error(error))
    }

    /// Adds a finished value to the innermost open aggregate, closing every aggregate it
    /// completes. Returns the top-level value once it is complete, and resets for the next one.
    private mutating func complete(_ finished: RESPValue) -> RESPValue? {
        var value = finished
        while !stack.isEmpty {
            let i = stack.count &- 1
            stack[i].items.append(value)
            stack[i].remaining &-= 1
            if stack[i].remaining > 0 {
                state = .typeByte
                return nil
            }
            let frame = stack.removeLast()
            assert(frame.remaining == 0 && frame.items.count >= 1)
            switch frame.kind {
            case .array: value = .array(frame.items)
            case .set: value = .set(frame.items)
            case .push: value = .push(frame.items)
            case .map: value = .map(Self.pairs(frame.items))
            case .attribute:
                // The attribute map is done; it describes the value that follows it.
                stack.append(Frame(kind: .attributed(Self.pairs(frame.items)), remaining: 1, items: []))
                state = .typeByte
                return nil
            case .attributed(let entries):
                assert(frame.items.count == 1)
                value = .attribute(entries, frame.items[0])
            }
        }
        state = .typeByte
        valueBytes = 0
        return value
    }

    private static func pairs(_ items: [RESPValue]) -> [RESPMapEntry] {
        assert(items.count % 2 == 0)
        var out: [RESPMapEntry] = []
        out.reserveCapacity(items.count / 2)
        var i = 0
        while i < items.count {
            out.append(RESPMapEntry(key: items[i], value: items[i &+ 1]))
            i &+= 2
        }
        return out
    }

    // MARK: - Lines

    private enum LineResult {
        /// A complete line of `count` content bytes is in `line` (followed by its CRLF).
        case line(count: Int)
        case needMore
        case failure(RESPParseError)
    }

    /// Moves input up to and including the next LF into `line`, checking the line limit before
    /// buffering anything.
    private mutating func takeLine(_ input: UnsafeBufferPointer<UInt8>, _ offset: inout Int) -> LineResult {
        let start = offset
        let base = UnsafeRawPointer(input.baseAddress!)
        let lfPointer = memchr(base + start, Int32(ASCII.lf), input.count &- start)
        let complete = lfPointer != nil
        var end = input.count
        if let lfPointer { end = base.distance(to: UnsafeRawPointer(lfPointer)) &+ 1 }
        let newCount = line.count &+ (end &- start)

        // The byte before the LF (or the last byte, for a partial line) may be the CR of the CRLF;
        // it does not count toward the limit, so the result is the same however the line was split.
        var content = newCount
        if complete {
            content &-= 1
            let beforeLF: UInt8 = end &- start >= 2 ? input[end &- 2] : (line.last ?? 0)
            if beforeLF == ASCII.cr { content &-= 1 }
        } else if input[end &- 1] == ASCII.cr {
            content &-= 1
        }
        if content > limits.maxLineBytes { return .failure(.lineTooLong) }

        line.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<end]))
        offset = end
        guard complete else { return .needMore }
        guard content == newCount &- 2 else { return .failure(.invalidLineEnding) }
        return .line(count: content)
    }

    private enum LineOutcome {
        case value(RESPValue)
        /// A header: a payload or the elements of an aggregate follow.
        case pending
        case failure(RESPParseError)
    }

    /// Interprets a complete line (without its CRLF) after a `type` byte.
    private mutating func lineValue(_ type: RESPType, _ text: UnsafeBufferPointer<UInt8>) -> LineOutcome {
        switch type {
        case .simpleString, .simpleError:
            // The LF ended the line; a CR inside would be read differently by another parser.
            if text.contains(ASCII.cr) { return .failure(.invalidFraming) }
            let string = String(decoding: text, as: UTF8.self)
            return .value(type == .simpleString ? .simpleString(string) : .simpleError(string))
        case .integer:
            guard let n = RESPSyntax.integer(text) else { return .failure(.invalidInteger) }
            return .value(.integer(n))
        case .null:
            return text.isEmpty ? .value(.null) : .failure(.invalidNull)
        case .boolean:
            guard text.count == 1, text[0] == ASCII.t || text[0] == ASCII.f else { return .failure(.invalidBoolean) }
            return .value(.boolean(text[0] == ASCII.t))
        case .double:
            guard let d = RESPSyntax.double(text) else { return .failure(.invalidDouble) }
            return .value(.double(d))
        case .bigNumber:
            guard RESPSyntax.isBigNumber(text) else { return .failure(.invalidBigNumber) }
            return .value(.bigNumber(String(decoding: text, as: UTF8.self)))
        case .bulkString, .bulkError, .verbatimString:
            return bulkHeader(type, text)
        case .array, .map, .set, .attribute, .push:
            return aggregateHeader(type, text)
        }
    }

    private mutating func bulkHeader(_ type: RESPType, _ text: UnsafeBufferPointer<UInt8>) -> LineOutcome {
        if text.count == 1 && text[0] == ASCII.questionMark { return .failure(.streamingUnsupported) }
        if type == .bulkString && RESPSyntax.isMinusOne(text) { return .value(.null) }  // RESP2 null bulk string
        guard let length = RESPSyntax.length(text) else { return .failure(.invalidLength) }
        if length > limits.maxBulkBytes { return .failure(.bulkTooLong) }
        // The payload and its CRLF are charged now, before any of it is buffered.
        if length > limits.maxValueBytes &- valueBytes &- 2 { return .failure(.valueTooLarge) }
        if type == .verbatimString && length < 4 { return .failure(.invalidVerbatim) }
        valueBytes &+= length &+ 2
        payload.reserveCapacity(min(length, Self.maxPayloadReservation))
        state = length == 0 ? .payloadCR(type) : .payload(type, remaining: length)
        return .pending
    }

    private mutating func aggregateHeader(_ type: RESPType, _ text: UnsafeBufferPointer<UInt8>) -> LineOutcome {
        if text.count == 1 && text[0] == ASCII.questionMark { return .failure(.streamingUnsupported) }
        if type == .array && RESPSyntax.isMinusOne(text) { return .value(.null) }  // RESP2 null array
        guard let count = RESPSyntax.length(text) else { return .failure(.invalidLength) }
        if count > limits.maxAggregateCount { return .failure(.aggregateTooLarge) }
        let keyed = type == .map || type == .attribute
        let (elements, overflow) = count.multipliedReportingOverflow(by: keyed ? 2 : 1)
        if overflow { return .failure(.aggregateTooLarge) }
        if elements == 0 && type != .attribute {
            switch type {
            case .array: return .value(.array([]))
            case .set: return .value(.set([]))
            case .push: return .value(.push([]))
            default: return .value(.map([]))
            }
        }
        if depth &+ 1 > limits.maxDepth { return .failure(.tooDeep) }
        // Each element takes at least 3 more bytes: refuse a count the budget cannot hold.
        if elements > (limits.maxValueBytes &- valueBytes) / Self.minimumValueBytes { return .failure(.valueTooLarge) }
        let kind: Frame.Kind
        switch type {
        case .array: kind = .array
        case .set: kind = .set
        case .push: kind = .push
        case .map: kind = .map
        default: kind = elements == 0 ? .attributed([]) : .attribute
        }
        var items: [RESPValue] = []
        items.reserveCapacity(min(elements, Self.maxElementReservation))
        stack.append(Frame(kind: kind, remaining: max(elements, 1), items: items))
        state = .typeByte
        return .pending
    }
}

/// Bytes the parser and writer compare against.
enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let plus: UInt8 = 0x2B
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let colon: UInt8 = 0x3A
    static let questionMark: UInt8 = 0x3F
    static let star: UInt8 = 0x2A
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let upperE: UInt8 = 0x45
    static let lowerE: UInt8 = 0x65
    static let f: UInt8 = 0x66
    static let t: UInt8 = 0x74
}
