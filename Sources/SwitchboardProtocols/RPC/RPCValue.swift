// The strict JSON reader/writer lives in SwitchboardProtocols today and moves to the
// SwitchboardJSON target (branch broadcaster); this import makes both layouts build.
#if canImport(SwitchboardJSON)
import SwitchboardJSON
#endif

/// A JSON value as an RPC handler sees it: the arguments of a request, its result, an error's
/// data.
///
/// Numbers are `Double`, as in JavaScript (the reference is a Node library); integers beyond
/// 2^53 lose precision exactly as they would there. Objects keep their members in the order
/// they were received or built, so a value that only passes through (an `echo`) goes back out
/// with the same bytes a JavaScript peer's `JSON.stringify` would produce.
public enum RPCValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([RPCValue])
    case object(RPCObject)

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var numberValue: Double? { if case .number(let d) = self { d } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [RPCValue]? { if case .array(let a) = self { a } else { nil } }
    public var objectValue: RPCObject? { if case .object(let o) = self { o } else { nil } }
    public var isNull: Bool { self == .null }

    /// The member `key` of an object (nil for other kinds or a missing key).
    public subscript(key: String) -> RPCValue? { objectValue?[key] }

    /// The element at `index` of an array (nil for other kinds or out of range).
    public subscript(index: Int) -> RPCValue? {
        guard case .array(let a) = self, a.indices.contains(index) else { return nil }
        return a[index]
    }

    /// Compact JSON text, byte for byte what JavaScript's `JSON.stringify` produces for the
    /// same value (member order kept, non-finite numbers as `null`).
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// `jsonText` as UTF-8 bytes.
    public var jsonBytes: [UInt8] {
        var out: [UInt8] = []
        append(to: &out)
        return out
    }

    /// Appends the compact JSON text. Recursive: values built in Swift are as deep as the code
    /// that built them; values read from the wire are bounded by `RPCLimits.maxDepth`.
    func append(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let d): RPCNumberFormat.append(d, to: &out)
        case .string(let s): JSONWriter.appendString(&out, s)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.append(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, m) in o.members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(&out, m.key)
                out.append(UInt8(ascii: ":"))
                m.value.append(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

/// A JSON object with its members in order. Keys are unique: setting an existing key replaces
/// its value in place (as a JavaScript object does, and as `JSON.parse` treats a duplicate key).
public struct RPCObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var members: [(key: String, value: RPCValue)] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, RPCValue)...) {
        for (k, v) in elements { self[k] = v }
    }

    public var count: Int { members.count }
    public var keys: [String] { members.map(\.key) }

    public subscript(key: String) -> RPCValue? {
        get { members.first { $0.key == key }?.value }
        set {
            let i = members.firstIndex { $0.key == key }
            switch (i, newValue) {
            case (let i?, let v?): members[i].value = v
            case (let i?, nil): members.remove(at: i)
            case (nil, let v?): members.append((key, v))
            case (nil, nil): break
            }
        }
    }

    /// Equal when both have the same keys with equal values, in any order (JSON semantics).
    public static func == (a: RPCObject, b: RPCObject) -> Bool {
        guard a.members.count == b.members.count else { return false }
        return a.members.allSatisfy { m in b[m.key] == m.value }
    }
}

extension RPCValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: RPCValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, RPCValue)...) {
        var o = RPCObject()
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

extension RPCValue: CustomStringConvertible {
    public var description: String { jsonText }
}

// MARK: - Reading

extension RPCValue {
    /// Parses one JSON value (with optional surrounding whitespace), strictly (RFC 8259, the
    /// same rules as the message reader) and at most `maxDepth` containers deep.
    public static func parse(_ text: String, maxDepth: Int = RPCLimits.defaultMaxDepth) throws(RPCValueError) -> RPCValue {
        var copy = text
        return try copy.withUTF8 { parseResult($0, maxDepth: maxDepth) }.get()
    }

    /// Parses one JSON value from UTF-8 bytes (see `parse(_:maxDepth:)`).
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = RPCLimits.defaultMaxDepth) throws(RPCValueError) -> RPCValue {
        try parseResult(bytes, maxDepth: maxDepth).get()
    }

    private static func parseResult(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> Result<RPCValue, RPCValueError> {
        // Validate first with the strict, iterative reader (wrapped in an object so that any
        // top-level value is accepted); the recursive builder then only sees well-formed text
        // whose depth is already bounded.
        var wrapped: [UInt8] = Array("{\"v\":".utf8)
        wrapped.append(contentsOf: bytes)
        wrapped.append(UInt8(ascii: "}"))
        return wrapped.withUnsafeBufferPointer { w -> Result<RPCValue, RPCValueError> in
            let members: [String: JSONMember]
            do throws(JSONError) {
                members = try JSONReader.parseObject(w, maxDepth: maxDepth + 1)
            } catch {
                return .failure(error == .tooDeep ? .tooDeep : .invalid)
            }
            guard let m = members["v"], members.count == 1 else { return .failure(.invalid) }
            return Result { () throws(RPCValueError) in try build(w, m.range) }
        }
    }

    /// Builds the value in `range` of text that `JSONReader` has already validated.
    static func build(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws(RPCValueError) -> RPCValue {
        var builder = RPCValueBuilder(bytes: bytes, pos: range.lowerBound, end: range.upperBound)
        let v = try builder.value()
        builder.skipWhitespace()
        guard builder.pos == range.upperBound else { throw .invalid }
        return v
    }
}

/// Why `RPCValue.parse` refused its input.
public enum RPCValueError: Error, Equatable, Sendable {
    case invalid
    case tooDeep
}

/// Recursive descent over validated JSON. Every step is still bounds-checked, so a bug in the
/// validator could produce an error, never a crash; recursion depth is bounded by the
/// validator's `maxDepth`.
struct RPCValueBuilder {
    let bytes: UnsafeBufferPointer<UInt8>
    var pos: Int
    let end: Int

    mutating func skipWhitespace() {
        while pos < end, bytes[pos] == 0x20 || bytes[pos] == 0x09 || bytes[pos] == 0x0A || bytes[pos] == 0x0D { pos += 1 }
    }

    mutating func value() throws(RPCValueError) -> RPCValue {
        skipWhitespace()
        guard pos < end else { throw .invalid }
        switch bytes[pos] {
        case UInt8(ascii: "n"): pos += 4; return .null
        case UInt8(ascii: "t"): pos += 4; return .bool(true)
        case UInt8(ascii: "f"): pos += 5; return .bool(false)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "["):
            pos += 1
            var a: [RPCValue] = []
            skipWhitespace()
            if pos < end, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(a) }
            while true {
                a.append(try value())
                skipWhitespace()
                guard pos < end else { throw .invalid }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "]") { return .array(a) }
                guard c == UInt8(ascii: ",") else { throw .invalid }
            }
        case UInt8(ascii: "{"):
            pos += 1
            var o = RPCObject()
            skipWhitespace()
            if pos < end, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(o) }
            while true {
                skipWhitespace()
                guard pos < end, bytes[pos] == UInt8(ascii: "\"") else { throw .invalid }
                let key = try string()
                skipWhitespace()
                guard pos < end, bytes[pos] == UInt8(ascii: ":") else { throw .invalid }
                pos += 1
                o[key] = try value()
                skipWhitespace()
                guard pos < end else { throw .invalid }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "}") { return .object(o) }
                guard c == UInt8(ascii: ",") else { throw .invalid }
            }
        default:
            let start = pos
            while pos < end {
                let c = bytes[pos]
                guard (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                        || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") else { break }
                pos += 1
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
            guard let d = Double(text) else { throw .invalid }
            return .number(d)
        }
    }

    /// A string at its opening quote; moves past the closing quote.
    mutating func string() throws(RPCValueError) -> String {
        let start = pos
        pos += 1
        while pos < end {
            let c = bytes[pos]
            if c == UInt8(ascii: "\\") { pos += 2; continue }
            pos += 1
            if c == UInt8(ascii: "\"") {
                do { return try JSONReader.decodeString(bytes, start..<pos) } catch { throw .invalid }
            }
        }
        throw .invalid
    }
}

// MARK: - Numbers as JavaScript prints them

/// `Number.prototype.toString()` (ECMA-262 Number::toString, radix 10) for finite doubles, so
/// that numbers leave exactly as a JavaScript peer would have written them; NaN and infinities
/// become `null`, as `JSON.stringify` writes them.
enum RPCNumberFormat {
    static func append(_ x: Double, to out: inout [UInt8]) {
        guard x.isFinite else { out.append(contentsOf: "null".utf8); return }
        if x == 0 { out.append(UInt8(ascii: "0")); return }  // also -0, as JavaScript
        if x < 0 { out.append(UInt8(ascii: "-")) }
        let (digits, n) = shortestDigits(x.magnitude)
        let k = digits.count
        if k <= n && n <= 21 {
            out.append(contentsOf: digits)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n - k))
        } else if 0 < n && n <= 21 {
            out.append(contentsOf: digits[0..<n])
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: digits[n...])
        } else if -6 < n && n <= 0 {
            out.append(contentsOf: "0.".utf8)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -n))
            out.append(contentsOf: digits)
        } else {
            out.append(digits[0])
            if k > 1 {
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: digits[1...])
            }
            out.append(UInt8(ascii: "e"))
            out.append(n - 1 >= 0 ? UInt8(ascii: "+") : UInt8(ascii: "-"))
            out.append(contentsOf: String((n - 1).magnitude).utf8)
        }
    }

    /// The shortest digits that round-trip (Swift's `description` computes them) and the
    /// decimal exponent `n` such that the value is 0.d1d2… × 10^n.
    static func shortestDigits(_ x: Double) -> (digits: [UInt8], n: Int) {
        assert(x > 0 && x.isFinite)
        let text = Array(x.description.utf8)  // "123.45", "1e-05", "1.2345e+20"
        var mantissa = text[...]
        var exponent = 0
        if let e = text.firstIndex(of: UInt8(ascii: "e")) {
            mantissa = text[..<e]
            exponent = Int(String(decoding: text[(e + 1)...], as: UTF8.self)) ?? 0
        }
        var digits: [UInt8] = []
        var point: Int? = nil
        for c in mantissa {
            if c == UInt8(ascii: ".") { point = digits.count } else { digits.append(c) }
        }
        var pointIndex = point ?? digits.count
        while digits.count > 1, digits.first == UInt8(ascii: "0") {
            digits.removeFirst()
            pointIndex -= 1
        }
        while digits.count > 1, digits.last == UInt8(ascii: "0") { digits.removeLast() }
        return (digits, pointIndex + exponent)
    }
}
