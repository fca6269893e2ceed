/// Builds one JSON object as UTF-8 bytes, members in call order (no Foundation). Nested objects
/// are written with `object(_:_:)`; values that are already JSON text (a payload forwarded as
/// received) with `raw(_:_:)`.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    private var first = true

    public init(capacity: Int = 128) {
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ k: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func string(_ k: StaticString, _ value: String) {
        key(k)
        JSONWriter.appendString(&bytes, value)
    }

    public mutating func int(_ k: StaticString, _ value: Int) {
        key(k)
        bytes.append(contentsOf: String(value).utf8)
    }

    /// A value that is already valid JSON text (the payload, forwarded as received).
    public mutating func raw(_ k: StaticString, _ json: UnsafeBufferPointer<UInt8>) {
        key(k)
        bytes.append(contentsOf: json)
    }

    public mutating func stringArray(_ k: StaticString, _ values: [String]) {
        key(k)
        bytes.append(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(&bytes, v)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func bool(_ k: StaticString, _ value: Bool) {
        key(k)
        bytes.append(contentsOf: value ? Array("true".utf8) : Array("false".utf8))
    }

    /// A value that is already valid JSON text, as an array (bytes copied from another buffer).
    public mutating func raw(_ k: StaticString, _ json: [UInt8]) {
        key(k)
        bytes.append(contentsOf: json)
    }

    /// A nested object whose members `body` writes (in call order).
    public mutating func object(_ k: StaticString, _ body: (inout JSONWriter) -> Void) {
        key(k)
        bytes.append(UInt8(ascii: "{"))
        first = true
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        // The outer object already has a member (this one), so the next needs a comma.
        first = false
    }

    /// Closes the object and returns its UTF-8 bytes.
    public mutating func finishBytes() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// Closes the object and returns its text.
    public mutating func finish() -> String {
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `value` as a JSON string: `"` and `\` escaped, control characters as short
    /// escapes or `\u00XX`; everything else (including non-ASCII) as UTF-8.
    public static func appendString(_ out: inout [UInt8], _ value: String) {
        out.append(UInt8(ascii: "\""))
        for c in value.utf8 {
            switch c {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\\")); out.append(c)
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0x08: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "f"))
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hexDigits[Int(c >> 4)], hexDigits[Int(c & 0xF)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
