import Testing
@testable import SwitchboardRESP

@Suite struct LimitTests {
    private let limits = RESPLimits(maxBulkBytes: 10, maxLineBytes: 24, maxAggregateCount: 4, maxDepth: 3, maxValueBytes: 200)

    @Test func defaultsAreValidAndDocumented() {
        let d = RESPLimits()
        #expect(d.validate() == nil)
        #expect(d.maxBulkBytes == 64 << 20 && d.maxLineBytes == 64 << 10 && d.maxAggregateCount == 1 << 20)
        #expect(d.maxDepth == 32 && d.maxValueBytes == 128 << 20)
        #expect(RESPLimits(maxLineBytes: 19).validate() != nil)
        #expect(RESPLimits(maxDepth: 0).validate() != nil)
        #expect(RESPLimits(maxValueBytes: 2).validate() != nil)
        #expect(RESPLimits(maxBulkBytes: -1).validate() != nil)
    }

    /// Each limit: exactly at it parses, one over fails.
    @Test func everyLimitAtAndOver() {
        #expect(single("$10\r\n0123456789\r\n", limits: limits) == .bulkString(Array("0123456789".utf8)))
        #expect(errorOf(Array("$11\r\n".utf8), limits: limits) == (.bulkTooLong, .bulkTooLong))
        let line24 = String(repeating: "a", count: 24)
        #expect(single("+\(line24)\r\n", limits: limits) == .simpleString(line24))
        #expect(errorOf(Array("+\(line24)a\r\n".utf8), limits: limits) == (.lineTooLong, .lineTooLong))
        #expect(single("*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", limits: limits) == .array((1...4).map { .integer($0) }))
        #expect(errorOf(Array("*5\r\n".utf8), limits: limits) == (.aggregateTooLarge, .aggregateTooLarge))
        #expect(single("*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits) == .array([.array([.array([.integer(1)])])]))
        #expect(errorOf(Array("*1\r\n*1\r\n*1\r\n*1\r\n".utf8), limits: limits) == (.tooDeep, .tooDeep))
        // Empty aggregates open nothing, so they do not count toward the depth.
        #expect(single("*1\r\n*1\r\n*1\r\n*0\r\n", limits: limits) == .array([.array([.array([.array([])])])]))
        // An attribute's wrapper does not count toward the depth either; its map does.
        #expect(single("|0\r\n*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits) == .attribute([], .array([.array([.array([.integer(1)])])])))
    }

    /// A map's pair count doubled overflows Int: refused, never wrapped to a small count.
    @Test func hugeMapCountDoesNotWrap() {
        let unbounded = RESPLimits(maxAggregateCount: .max, maxValueBytes: .max)
        #expect(errorOf(Array("%4611686018427387904\r\n".utf8), limits: unbounded) == (.aggregateTooLarge, .aggregateTooLarge))
        #expect(errorOf(Array("|9223372036854775807\r\n".utf8), limits: unbounded) == (.aggregateTooLarge, .aggregateTooLarge))
        // Without the overflow, the same count is refused by the value budget (3 bytes per element at least).
        #expect(errorOf(Array("*4611686018427387904\r\n".utf8), limits: RESPLimits(maxAggregateCount: .max)) == (.valueTooLarge, .valueTooLarge))
    }

    @Test func valueBudgetIsExact() {
        // "*12\r\n" (5 bytes) + 11 × "$10\r\n0123456789\r\n" (17 bytes each) + "+zzzzzz\r\n" (9 bytes) = 201 bytes.
        let element = "$10\r\n0123456789\r\n"
        let last = "+" + String(repeating: "z", count: 6) + "\r\n"
        let exact = "*12\r\n" + String(repeating: element, count: 11) + last
        let oneShort = RESPLimits(maxBulkBytes: 10, maxLineBytes: 24, maxAggregateCount: 16, maxDepth: 3, maxValueBytes: 200)
        #expect(errorOf(Array(exact.utf8), limits: oneShort) == (.valueTooLarge, .valueTooLarge))
        let fits = RESPLimits(maxBulkBytes: 10, maxLineBytes: 24, maxAggregateCount: 16, maxDepth: 3, maxValueBytes: 201)
        #expect(single(exact, limits: fits) != nil)
        // The budget is per top-level value: the next value starts again from zero.
        let twice = Array((exact + exact).utf8)
        #expect(parseWhole(twice, limits: fits).count == 2)
        #expect(parseByteByByte(twice, limits: fits).count == 2)
    }

    /// A declared length is refused before its payload arrives, and nothing is buffered for it.
    @Test func limitsAreCheckedBeforeBuffering() {
        var parser = RESPParser(limits: limits)
        let header = Array("*1\r\n$1000000000\r\n".utf8)
        let (consumed, result) = header.withUnsafeBytes { parser.parse($0) }
        #expect(result == .error(.bulkTooLong))
        #expect(consumed == header.count)
        #expect(parser.bufferedByteCount == 0)

        // Within the limits, a large declared payload reserves little until its bytes arrive.
        var roomy = RESPParser(limits: RESPLimits(maxBulkBytes: 1 << 30, maxValueBytes: 1 << 31))
        let (_, partial) = Array("$1000000000\r\nab".utf8).withUnsafeBytes { roomy.parse($0) }
        #expect(partial == .needMore)
        #expect(roomy.bufferedByteCount == 2)
        #expect(roomy.hasPartialValue)
    }

    /// A line never ends: the parser stops at the line limit instead of buffering forever.
    @Test func endlessLineStopsAtTheLimit() {
        var parser = RESPParser(limits: limits)
        var events: [Event] = []
        var fed = 0
        feed(&parser, Array("+".utf8)[...], events: &events)
        while events.isEmpty && fed < 1000 {
            feed(&parser, Array("aaaa".utf8)[...], events: &events)
            fed += 4
            #expect(parser.bufferedByteCount <= limits.maxLineBytes + 2)
        }
        #expect(events == [.error(.lineTooLong)])
        #expect(fed <= limits.maxLineBytes + 4)
    }
}
