/// Why a byte stream is not valid RESP. After one, the parser is poisoned: the position of the
/// next value in the stream is unknowable, so the connection must be closed.
public enum RESPParseError: Error, Sendable, Equatable {
    /// A value started with a byte that is no RESP type.
    case invalidTypeByte(UInt8)
    /// A line did not end in CRLF (bare LF), or a CR was not followed by LF.
    case invalidLineEnding
    /// A simple string or error contained a CR or LF, or a payload was not followed by CRLF.
    case invalidFraming
    /// A length or count was empty, not decimal, had a sign or leading zero, overflowed,
    /// or was `-1` where no null exists.
    case invalidLength
    /// An integer line was not a decimal signed 64-bit integer.
    case invalidInteger
    /// A double line was not decimal (optionally with exponent), `inf`, `-inf` or `nan`.
    case invalidDouble
    /// A boolean line was not `t` or `f`.
    case invalidBoolean
    /// A big number line was not an optional sign and decimal digits.
    case invalidBigNumber
    /// A null line was not empty.
    case invalidNull
    /// A verbatim string was shorter than 4 bytes, or its first 3 bytes (the format) were not
    /// printable ASCII followed by `:`.
    case invalidVerbatim
    /// A push appeared inside an aggregate (RESP3 sends them only at the top level).
    case nestedPush
    /// A streamed string or aggregate (`$?`, `*?`, `;`, `.`): Redis never sends them; refused.
    case streamingUnsupported
    /// A payload longer than ``RESPLimits/maxBulkBytes``.
    case bulkTooLong
    /// A line longer than ``RESPLimits/maxLineBytes``.
    case lineTooLong
    /// An aggregate declaring more than ``RESPLimits/maxAggregateCount`` elements.
    case aggregateTooLarge
    /// Aggregates nested deeper than ``RESPLimits/maxDepth``.
    case tooDeep
    /// A top-level value larger than ``RESPLimits/maxValueBytes`` on the wire.
    case valueTooLarge
}

/// What one call to ``RESPParser/parse(_:)`` produced.
public enum RESPParseResult: Sendable, Equatable {
    /// Every byte was consumed and buffered; feed more.
    case needMore
    /// One complete top-level value. Bytes after it were not consumed.
    case value(RESPValue)
    /// The stream is invalid; the parser is poisoned.
    case error(RESPParseError)
}
