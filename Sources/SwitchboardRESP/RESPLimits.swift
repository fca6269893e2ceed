/// Upper bounds the parser enforces on every length and depth of a value.
///
/// Each limit is checked when the length or count is declared, before anything is buffered for
/// it: a peer that announces `$1000000000` is refused at once, not after a gigabyte arrived.
/// The bytes the parser holds for one value are bounded by ``maxValueBytes`` on the wire; the
/// decoded ``RESPValue`` adds a few tens of bytes of bookkeeping per element (an array slot and a
/// box), and every element costs at least 3 bytes on the wire, so memory stays within a small
/// constant factor of ``maxValueBytes``.
public struct RESPLimits: Sendable, Equatable {
    /// Largest payload of a bulk string, bulk error or verbatim string. Larger → ``RESPParseError/bulkTooLong``.
    public var maxBulkBytes: Int
    /// Longest line of a simple string, simple error, integer, double, boolean, big number or
    /// length header, CRLF excluded. Longer → ``RESPParseError/lineTooLong``.
    public var maxLineBytes: Int
    /// Most elements one aggregate may declare (pairs for maps and attributes). More → ``RESPParseError/aggregateTooLarge``.
    public var maxAggregateCount: Int
    /// Deepest nesting of aggregates (a top-level array holding an array is depth 2). Deeper → ``RESPParseError/tooDeep``.
    public var maxDepth: Int
    /// Most bytes one top-level value may take on the wire, framing included. More → ``RESPParseError/valueTooLarge``.
    public var maxValueBytes: Int

    /// Creates limits. The defaults fit replies of a Redis server used as a message bus:
    /// 64 MiB payloads (Redis allows 512 MiB; a broker message is bounded far lower), 1,048,576
    /// elements per aggregate, depth 32 (Redis replies nest at most a few levels) and 128 MiB per value.
    public init(
        maxBulkBytes: Int = 64 << 20,
        maxLineBytes: Int = 64 << 10,
        maxAggregateCount: Int = 1 << 20,
        maxDepth: Int = 32,
        maxValueBytes: Int = 128 << 20
    ) {
        self.maxBulkBytes = maxBulkBytes
        self.maxLineBytes = maxLineBytes
        self.maxAggregateCount = maxAggregateCount
        self.maxDepth = maxDepth
        self.maxValueBytes = maxValueBytes
    }

    /// Why these limits cannot work, or nil. Every limit must be positive; the line limit must
    /// hold the longest length header (`-9223372036854775808`, 20 bytes).
    public func validate() -> String? {
        if maxBulkBytes < 0 { return "maxBulkBytes must not be negative" }
        if maxLineBytes < 20 { return "maxLineBytes must be at least 20 (a 64-bit length)" }
        if maxAggregateCount < 0 { return "maxAggregateCount must not be negative" }
        if maxDepth < 1 { return "maxDepth must be at least 1" }
        if maxValueBytes < 3 { return "maxValueBytes must be at least 3 (the smallest value, _\\r\\n)" }
        return nil
    }
}
