/// Serializes RESP into a caller-owned byte buffer.
///
/// Commands go to a server as an array of bulk strings (binary safe, valid in RESP2 and RESP3);
/// ``write(_:into:)`` writes any ``RESPValue`` (replies in tests, fixtures, fuzz round trips).
public enum RESPWriter {
    /// Appends a command, `*N\r\n` then `$len\r\narg\r\n` for each argument.
    public static func writeCommand(_ arguments: [[UInt8]], into buffer: inout [UInt8]) {
        precondition(!arguments.isEmpty, "a command has at least its name")
        var size = 16
        for argument in arguments { size &+= argument.count &+ 24 }
        buffer.reserveCapacity(buffer.count &+ size)
        header(ASCII.star, arguments.count, into: &buffer)
        for argument in arguments {
            header(RESPParser.RESPType.bulkString.rawValue, argument.count, into: &buffer)
            buffer.append(contentsOf: argument)
            crlf(into: &buffer)
        }
    }

    /// Appends a command whose arguments are text (UTF-8).
    public static func writeCommand(_ arguments: [String], into buffer: inout [UInt8]) {
        writeCommand(arguments.map { Array($0.utf8) }, into: &buffer)
    }

    /// Appends `value` in RESP3 (``RESPValue/null`` as `_`).
    ///
    /// Simple strings and errors are lines: a CR or LF in them is written as a space, so a value
    /// can never break the framing. A big number must be an optional sign and digits, and a
    /// verbatim format exactly three bytes other than `:`, CR and LF (preconditions).
    public static func write(_ value: RESPValue, into buffer: inout [UInt8]) {
        typealias T = RESPParser.RESPType
        switch value {
        case .simpleString(let s): line(T.simpleString.rawValue, s, into: &buffer)
        case .simpleError(let s): line(T.simpleError.rawValue, s, into: &buffer)
        case .integer(let n):
            buffer.append(T.integer.rawValue)
            buffer.append(contentsOf: String(n).utf8)
            crlf(into: &buffer)
        case .bulkString(let bytes): bulk(T.bulkString.rawValue, bytes, into: &buffer)
        case .bulkError(let bytes): bulk(T.bulkError.rawValue, bytes, into: &buffer)
        case .verbatimString(let format, let text):
            let f = Array(format.utf8)
            precondition(f.count == 3 && !f.contains(ASCII.colon) && !f.contains(ASCII.cr) && !f.contains(ASCII.lf),
                         "a verbatim format is three bytes")
            header(T.verbatimString.rawValue, 4 &+ text.count, into: &buffer)
            buffer.append(contentsOf: f)
            buffer.append(ASCII.colon)
            buffer.append(contentsOf: text)
            crlf(into: &buffer)
        case .array(let items): aggregate(T.array.rawValue, items, into: &buffer)
        case .set(let items): aggregate(T.set.rawValue, items, into: &buffer)
        case .push(let items): aggregate(T.push.rawValue, items, into: &buffer)
        case .map(let entries): entriesAggregate(T.map.rawValue, entries, into: &buffer)
        case .attribute(let entries, let described):
            entriesAggregate(T.attribute.rawValue, entries, into: &buffer)
            write(described, into: &buffer)
        case .null:
            buffer.append(T.null.rawValue)
            crlf(into: &buffer)
        case .boolean(let b):
            buffer.append(T.boolean.rawValue)
            buffer.append(b ? ASCII.t : ASCII.f)
            crlf(into: &buffer)
        case .double(let d):
            buffer.append(T.double.rawValue)
            // Swift's shortest round-trip form ("1.5", "1e+20", "inf", "-inf", "nan") is in RESP's grammar.
            buffer.append(contentsOf: d.description.utf8)
            crlf(into: &buffer)
        case .bigNumber(let digits):
            let bytes = Array(digits.utf8)
            precondition(bytes.withUnsafeBufferPointer { RESPSyntax.isBigNumber($0) }, "a big number is a sign and digits")
            buffer.append(T.bigNumber.rawValue)
            buffer.append(contentsOf: bytes)
            crlf(into: &buffer)
        }
    }

    private static func header(_ type: UInt8, _ count: Int, into buffer: inout [UInt8]) {
        buffer.append(type)
        buffer.append(contentsOf: String(count).utf8)
        crlf(into: &buffer)
    }

    private static func crlf(into buffer: inout [UInt8]) {
        buffer.append(ASCII.cr)
        buffer.append(ASCII.lf)
    }

    private static func line(_ type: UInt8, _ text: String, into buffer: inout [UInt8]) {
        buffer.append(type)
        for byte in text.utf8 { buffer.append(byte == ASCII.cr || byte == ASCII.lf ? 0x20 : byte) }
        crlf(into: &buffer)
    }

    private static func bulk(_ type: UInt8, _ bytes: [UInt8], into buffer: inout [UInt8]) {
        header(type, bytes.count, into: &buffer)
        buffer.append(contentsOf: bytes)
        crlf(into: &buffer)
    }

    private static func aggregate(_ type: UInt8, _ items: [RESPValue], into buffer: inout [UInt8]) {
        header(type, items.count, into: &buffer)
        for item in items { write(item, into: &buffer) }
    }

    private static func entriesAggregate(_ type: UInt8, _ entries: [RESPMapEntry], into buffer: inout [UInt8]) {
        header(type, entries.count, into: &buffer)
        for entry in entries {
            write(entry.key, into: &buffer)
            write(entry.value, into: &buffer)
        }
    }
}
