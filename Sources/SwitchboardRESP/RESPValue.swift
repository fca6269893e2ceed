/// One RESP3 value (RESP2 values are the subset `+ - : $ *` with its two nulls).
///
/// Text the protocol defines as a line (simple strings and errors, big numbers, the verbatim
/// format) is a `String`, decoded as UTF-8 with invalid sequences replaced; binary-safe payloads
/// (bulk strings, bulk errors, verbatim text) stay bytes, exactly as received.
public indirect enum RESPValue: Sendable, Hashable {
    /// `+OK\r\n`
    case simpleString(String)
    /// `-ERR message\r\n`
    case simpleError(String)
    /// `:42\r\n`, a signed 64-bit integer.
    case integer(Int64)
    /// `$5\r\nhello\r\n`
    case bulkString([UInt8])
    /// `*2\r\n…`
    case array([RESPValue])
    /// `_\r\n`, and RESP2's null bulk string `$-1\r\n` and null array `*-1\r\n`.
    case null
    /// `#t\r\n` / `#f\r\n`
    case boolean(Bool)
    /// `,1.5\r\n`, also `,inf`, `,-inf` and `,nan` (NaN never equals itself, so neither does
    /// `.double(.nan)`).
    case double(Double)
    /// `(3492890328409238509324850943850943825024385\r\n`: sign and decimal digits, unbounded.
    case bigNumber(String)
    /// `!21\r\nSYNTAX invalid syntax\r\n`
    case bulkError([UInt8])
    /// `=15\r\ntxt:Some string\r\n`: a three-byte format (`txt`, `mkd`) and the text.
    case verbatimString(format: String, text: [UInt8])
    /// `%2\r\n…`: key/value pairs in the order received (keys may repeat; nothing is merged).
    case map([RESPMapEntry])
    /// `~3\r\n…`: elements in the order received (duplicates are kept as sent).
    case set([RESPValue])
    /// `|1\r\n…` followed by the value it describes: the attribute map and that value.
    case attribute([RESPMapEntry], RESPValue)
    /// `>3\r\n…`: out-of-band data (pub/sub messages, invalidations), only at the top level.
    case push([RESPValue])
}

/// One key/value pair of a ``RESPValue/map(_:)`` or ``RESPValue/attribute(_:_:)``.
public struct RESPMapEntry: Sendable, Hashable {
    /// The key: any value (Redis sends bulk strings, integers and simple strings).
    public var key: RESPValue
    /// The value stored under ``key``.
    public var value: RESPValue

    /// Creates a pair.
    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
    }
}
