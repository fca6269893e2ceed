/// A small, strict JSON reader for network-facing protocols (no Foundation, no dependencies).
///
/// The reader validates a whole message against RFC 8259 but materializes only one level: an
/// object's members (or an array's elements), each with its kind and the byte range of its RAW
/// value text. Protocols decode the few fields they need and forward payloads as the exact
/// bytes the client sent, never re-serialized. Nested values are read by parsing their range
/// again (`parseObject(_:in:maxDepth:)`, `parseArray(_:in:maxDepth:)`).
///
/// Strictness (all rejected as invalid JSON): anything other than one value surrounded by
/// JSON whitespace (space, tab, LF, CR); trailing commas; single quotes; comments; leading
/// zeros, `+`, `.5`, `1.`, NaN/Infinity; raw control characters (< 0x20) in strings; unknown
/// escapes; malformed `\u` escapes; lone UTF-16 surrogate escapes (`"\ud800"`), anywhere in the
/// message including the payload. Nesting deeper than `maxDepth` (the top-level object is depth
/// 1) is reported separately. Validation is iterative, so no input can exhaust the stack.
/// Duplicate keys are allowed; the last one wins (as JavaScript's `JSON.parse`). The object may
/// have at most `maxMembers` members, duplicates counted (more is refused as invalid):
/// materializing a member costs a String and a hash insert, and a 12 MB message of 1M distinct
/// keys cost 0.8 s of a shard; nested values are only validated (linear, no allocation) and are
/// not limited beyond `maxDepth` and the message size.
public enum JSONKind: Equatable, Sendable {
    case object, array, string, number, bool, null
}

public enum JSONError: Error, Equatable, Sendable {
    /// Not well-formed JSON.
    case invalid
    /// Well-formed so far, but nested deeper than allowed.
    case tooDeep
    /// Well-formed, but the top-level value is not an object.
    case notAnObject
}

/// One member of an object: its kind and the raw value's byte range in the input.
public struct JSONMember: Sendable {
    public var key: String
    public var kind: JSONKind
    public var range: Range<Int>
}

/// One element of an array: its kind and the raw value's byte range in the input.
public struct JSONElement: Sendable {
    public var kind: JSONKind
    public var range: Range<Int>
}

public struct JSONReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var pos = 0
    private let maxDepth: Int

    /// Reads `bytes[range]`; positions stay absolute (relative to `bytes`), so ranges found in a
    /// nested parse index the same buffer as the outer one.
    private let end: Int

    private init(_ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>, maxDepth: Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "range outside the buffer")
        self.bytes = bytes
        self.pos = range.lowerBound
        self.end = range.upperBound
        self.maxDepth = max(1, maxDepth)
    }

    /// Members an object may have (the broker's messages have a handful).
    public static let defaultMaxMembers = 1024

    /// Parses `bytes` as one JSON object and returns its members (last duplicate wins).
    public static func parseObject(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int,
                                   maxMembers: Int = defaultMaxMembers) throws(JSONError) -> [String: JSONMember] {
        try parseObject(bytes, in: 0..<bytes.count, maxDepth: maxDepth, maxMembers: maxMembers)
    }

    /// Parses `bytes[range]` (for example a member's range from an outer parse) as one JSON
    /// object. Member ranges index `bytes`. `maxDepth` counts from this object (depth 1).
    public static func parseObject(_ bytes: UnsafeBufferPointer<UInt8>, in range: Range<Int>, maxDepth: Int,
                                   maxMembers: Int = defaultMaxMembers) throws(JSONError) -> [String: JSONMember] {
        var r = JSONReader(bytes, range: range, maxDepth: maxDepth)
        r.skipWhitespace()
        guard r.pos < r.end else { throw .invalid }
        if bytes[r.pos] != UInt8(ascii: "{") {
            // Validate anyway, so that malformed input is reported as such.
            _ = try r.skipValue(baseDepth: 0)
            r.skipWhitespace()
            guard r.pos == r.end else { throw .invalid }
            throw .notAnObject
        }
        r.pos += 1
        var members: [String: JSONMember] = [:]
        var memberCount = 0
        r.skipWhitespace()
        if r.peek() == UInt8(ascii: "}") {
            r.pos += 1
        } else {
            while true {
                r.skipWhitespace()
                guard r.peek() == UInt8(ascii: "\"") else { throw .invalid }
                memberCount += 1
                if memberCount > maxMembers { throw .invalid }
                let keyStart = r.pos
                try r.skipString()
                let key = try JSONReader.decodeString(bytes, keyStart..<r.pos)
                assert(r.pos <= r.end)
                r.skipWhitespace()
                guard r.peek() == UInt8(ascii: ":") else { throw .invalid }
                r.pos += 1
                r.skipWhitespace()
                let start = r.pos
                let kind = try r.skipValue(baseDepth: 1)
                members[key] = JSONMember(key: key, kind: kind, range: start..<r.pos)
                r.skipWhitespace()
                guard let c = r.peek() else { throw .invalid }
                r.pos += 1
                if c == UInt8(ascii: ",") { continue }
                if c == UInt8(ascii: "}") { break }
                throw .invalid
            }
        }
        r.skipWhitespace()
        guard r.pos == r.end else { throw .invalid }
        return members
    }

    /// Parses `bytes[range]` as one JSON array and returns its elements in order. Throws
    /// `.notAnObject` when the (well-formed) value is not an array.
    public static func parseArray(_ bytes: UnsafeBufferPointer<UInt8>, in range: Range<Int>, maxDepth: Int) throws(JSONError) -> [JSONElement] {
        var r = JSONReader(bytes, range: range, maxDepth: maxDepth)
        r.skipWhitespace()
        guard r.pos < r.end else { throw .invalid }
        if bytes[r.pos] != UInt8(ascii: "[") {
            _ = try r.skipValue(baseDepth: 0)
            r.skipWhitespace()
            guard r.pos == r.end else { throw .invalid }
            throw .notAnObject
        }
        r.pos += 1
        var elements: [JSONElement] = []
        r.skipWhitespace()
        if r.peek() == UInt8(ascii: "]") {
            r.pos += 1
        } else {
            while true {
                r.skipWhitespace()
                let start = r.pos
                let kind = try r.skipValue(baseDepth: 1)
                elements.append(JSONElement(kind: kind, range: start..<r.pos))
                r.skipWhitespace()
                guard let c = r.peek() else { throw .invalid }
                r.pos += 1
                if c == UInt8(ascii: ",") { continue }
                if c == UInt8(ascii: "]") { break }
                throw .invalid
            }
        }
        r.skipWhitespace()
        guard r.pos == r.end else { throw .invalid }
        return elements
    }

    private func peek() -> UInt8? { pos < end ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while pos < end {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    /// Validates one value starting at `pos` (after whitespace) and moves past it. Iterative:
    /// an explicit stack of open containers, bounded by `maxDepth`.
    private mutating func skipValue(baseDepth: Int) throws(JSONError) -> JSONKind {
        var stack: [Bool] = []  // true: object, false: array
        var firstKind: JSONKind? = nil
        value: while true {
            skipWhitespace()
            guard let c = peek() else { throw .invalid }
            let kind: JSONKind
            var opened = false
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let isObject = c == UInt8(ascii: "{")
                kind = isObject ? .object : .array
                if baseDepth + stack.count + 1 > maxDepth { throw .tooDeep }
                pos += 1
                skipWhitespace()
                if peek() == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    pos += 1
                } else {
                    stack.append(isObject)
                    opened = true
                    if isObject { try skipKey() }
                }
            case UInt8(ascii: "\""):
                kind = .string
                try skipString()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                kind = .number
                try skipNumber()
            case UInt8(ascii: "t"):
                kind = .bool
                try skipLiteral("true")
            case UInt8(ascii: "f"):
                kind = .bool
                try skipLiteral("false")
            case UInt8(ascii: "n"):
                kind = .null
                try skipLiteral("null")
            default:
                throw .invalid
            }
            if firstKind == nil { firstKind = kind }
            if opened { continue value }
            // A complete value: close containers / move to the next element.
            while let isObject = stack.last {
                skipWhitespace()
                guard let d = peek() else { throw .invalid }
                pos += 1
                if d == UInt8(ascii: ",") {
                    if isObject { try skipKey() }
                    continue value
                }
                if d == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    stack.removeLast()
                    continue
                }
                throw .invalid
            }
            return firstKind!
        }
    }

    /// `"key"` `:` (with whitespace), leaving `pos` at the value.
    private mutating func skipKey() throws(JSONError) {
        skipWhitespace()
        guard peek() == UInt8(ascii: "\"") else { throw .invalid }
        try skipString()
        skipWhitespace()
        guard peek() == UInt8(ascii: ":") else { throw .invalid }
        pos += 1
    }

    private mutating func skipLiteral(_ literal: StaticString) throws(JSONError) {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= end else { throw .invalid }
        let p = literal.utf8Start
        for i in 0..<n where bytes[pos + i] != p[i] { throw .invalid }
        pos += n
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private mutating func skipDigits() throws(JSONError) {
        guard let c = peek(), JSONReader.isDigit(c) else { throw .invalid }
        while let c = peek(), JSONReader.isDigit(c) { pos += 1 }
    }

    private mutating func skipNumber() throws(JSONError) {
        if peek() == UInt8(ascii: "-") { pos += 1 }
        guard let c = peek() else { throw .invalid }
        if c == UInt8(ascii: "0") {
            pos += 1
        } else if JSONReader.isDigit(c) {
            try skipDigits()
        } else {
            throw .invalid
        }
        if peek() == UInt8(ascii: ".") {
            pos += 1
            try skipDigits()
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            pos += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { pos += 1 }
            try skipDigits()
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    private static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, _ at: Int, end: Int) throws(JSONError) -> UInt32 {
        guard at + 4 <= end else { throw .invalid }
        var v: UInt32 = 0
        for i in 0..<4 {
            guard let h = hexValue(bytes[at + i]) else { throw .invalid }
            v = v << 4 | h
        }
        return v
    }

    /// Validates a string (at its opening quote) and moves past its closing quote. The input is
    /// UTF-8 already validated by the WebSocket layer (text frames).
    private mutating func skipString() throws(JSONError) {
        pos += 1
        while pos < end {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") { pos += 1; return }
            if c < 0x20 { throw .invalid }
            if c == UInt8(ascii: "\\") {
                pos += 1
                guard let e = peek() else { throw .invalid }
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    pos += 1
                case UInt8(ascii: "u"):
                    let v = try JSONReader.hex4(bytes, pos + 1, end: end)
                    pos += 5
                    if v >= 0xD800 && v <= 0xDBFF {
                        guard pos + 1 < end, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else { throw .invalid }
                        let low = try JSONReader.hex4(bytes, pos + 2, end: end)
                        guard low >= 0xDC00 && low <= 0xDFFF else { throw .invalid }
                        pos += 6
                    } else if v >= 0xDC00 && v <= 0xDFFF {
                        throw .invalid
                    }
                default:
                    throw .invalid
                }
                continue
            }
            pos += 1
        }
        throw .invalid
    }

    /// Decodes a validated string value (range includes the quotes).
    public static func decodeString(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws(JSONError) -> String {
        let inner = (range.lowerBound + 1)..<(range.upperBound - 1)
        // Fast path: no escapes.
        var hasEscape = false
        for i in inner where bytes[i] == UInt8(ascii: "\\") { hasEscape = true; break }
        if !hasEscape {
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[inner]), as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(inner.count)
        var i = inner.lowerBound
        while i < inner.upperBound {
            let c = bytes[i]
            guard c == UInt8(ascii: "\\") else { out.append(c); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(bytes, i, end: inner.upperBound)
                i += 4
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    let low = try hex4(bytes, i + 2, end: inner.upperBound)
                    i += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw .invalid }
                UTF8.encode(u) { out.append($0) }
            default: out.append(e)  // " \ /
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of a validated number if it is an integer literal (no fraction or exponent)
    /// within JavaScript's safe-integer range, ±(2^53 - 1).
    public static func safeInteger(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int? {
        var i = range.lowerBound
        var negative = false
        if bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard range.upperBound - i <= 16 else { return nil }
        var v = 0
        while i < range.upperBound {
            let c = bytes[i]
            guard isDigit(c) else { return nil }
            v = v * 10 + Int(c - 0x30)
            i += 1
        }
        guard v <= 9_007_199_254_740_991 else { return nil }
        return negative ? -v : v
    }

    /// The integer part of a validated number (fraction truncated toward zero, exponent
    /// applied) if it lies within JavaScript's safe-integer range; for NumericDate claims such
    /// as JWT `exp`, which RFC 7519 allows to be non-integer. Nil when out of range.
    public static func truncatedInteger(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int? {
        if let exact = safeInteger(bytes, range) { return exact }
        // Rare path: the literal has a fraction or exponent. The text is a validated JSON number,
        // which Swift's Double parser accepts as is.
        guard range.count <= 64 else { return nil }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        guard let value = Double(text), value.isFinite, abs(value) <= 9_007_199_254_740_991 else { return nil }
        return Int(value.rounded(.towardZero))
    }
}
