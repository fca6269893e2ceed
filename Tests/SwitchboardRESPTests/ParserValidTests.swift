import Testing
@testable import SwitchboardRESP

@Suite struct ParserValidTests {
    @Test func simpleTypes() {
        #expect(single("+OK\r\n") == .simpleString("OK"))
        #expect(single("+\r\n") == .simpleString(""))
        #expect(single("-ERR unknown command 'x'\r\n") == .simpleError("ERR unknown command 'x'"))
        #expect(single(":0\r\n") == .integer(0))
        #expect(single(":-42\r\n") == .integer(-42))
        #expect(single(":+7\r\n") == .integer(7))
        #expect(single(":9223372036854775807\r\n") == .integer(.max))
        #expect(single(":-9223372036854775808\r\n") == .integer(.min))
        #expect(single("_\r\n") == .null)
        #expect(single("#t\r\n") == .boolean(true))
        #expect(single("#f\r\n") == .boolean(false))
        #expect(single("(3492890328409238509324850943850943825024385\r\n") == .bigNumber("3492890328409238509324850943850943825024385"))
        #expect(single("(-1\r\n") == .bigNumber("-1"))
    }

    @Test func doubles() {
        #expect(single(",1.5\r\n") == .double(1.5))
        #expect(single(",-0.25\r\n") == .double(-0.25))
        #expect(single(",10\r\n") == .double(10))
        #expect(single(",1e+20\r\n") == .double(1e20))
        #expect(single(",1.23E-5\r\n") == .double(1.23e-5))
        #expect(single(",inf\r\n") == .double(.infinity))
        #expect(single(",-inf\r\n") == .double(-.infinity))
        // NaN never equals itself, so not through single(): whole and byte by byte separately.
        for events in [parseWhole(bytes(",nan\r\n")), parseByteByByte(bytes(",nan\r\n"))] {
            guard events.count == 1, case .value(.double(let nan)) = events[0] else { Issue.record("nan: \(events)"); continue }
            #expect(nan.isNaN)
        }
        // 17 significant digits (Redis' %.17g) read back exactly.
        #expect(single(",3.1415926535897931\r\n") == .double(3.1415926535897931))
    }

    @Test func bulkValues() {
        #expect(single("$5\r\nhello\r\n") == bulk("hello"))
        #expect(single("$0\r\n\r\n") == .bulkString([]))
        // Binary safe: CR, LF and NUL inside the payload are data.
        #expect(single("$6\r\na\r\nb\0c\r\n") == .bulkString([0x61, 0x0D, 0x0A, 0x62, 0x00, 0x63]))
        #expect(single("!21\r\nSYNTAX invalid syntax\r\n") == .bulkError(bytes("SYNTAX invalid syntax")))
        #expect(single("=15\r\ntxt:Some string\r\n") == .verbatimString(format: "txt", text: bytes("Some string")))
        #expect(single("=4\r\nmkd:\r\n") == .verbatimString(format: "mkd", text: []))
    }

    @Test func resp2Nulls() {
        #expect(single("$-1\r\n") == .null)
        #expect(single("*-1\r\n") == .null)
    }

    @Test func aggregates() {
        #expect(single("*0\r\n") == .array([]))
        #expect(single("*3\r\n:1\r\n$3\r\nfoo\r\n_\r\n") == .array([.integer(1), bulk("foo"), .null]))
        #expect(single("*2\r\n*1\r\n+a\r\n*0\r\n") == .array([.array([.simpleString("a")]), .array([])]))
        #expect(single("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n") == .map([entry(.simpleString("first"), .integer(1)), entry(.simpleString("second"), .integer(2))]))
        #expect(single("%0\r\n") == .map([]))
        #expect(single("~3\r\n+a\r\n+b\r\n+a\r\n") == .set([.simpleString("a"), .simpleString("b"), .simpleString("a")]))
        #expect(single(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n") == .push([bulk("message"), bulk("ch"), bulk("hi")]))
        // A map key may itself be an aggregate.
        #expect(single("%1\r\n*1\r\n:1\r\n#t\r\n") == .map([entry(.array([.integer(1)]), .boolean(true))]))
    }

    @Test func attributes() {
        // The example of the RESP3 specification: an attribute describing an array element.
        let raw = "*2\r\n|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n:2039123\r\n:9543892\r\n"
        let popularity = RESPValue.map([entry(bulk("a"), .double(0.1923)), entry(bulk("b"), .double(0.0012))])
        #expect(single(raw) == .array([.attribute([entry(.simpleString("key-popularity"), popularity)], .integer(2039123)), .integer(9543892)]))
        // At the top level, and an empty attribute map.
        #expect(single("|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n") == .attribute([entry(.simpleString("ttl"), .integer(3600))], bulk("v")))
        #expect(single("|0\r\n:1\r\n") == .attribute([], .integer(1)))
        // A push may follow an attribute at the top level.
        #expect(single("|1\r\n+a\r\n+b\r\n>1\r\n+x\r\n") == .attribute([entry(.simpleString("a"), .simpleString("b"))], .push([.simpleString("x")])))
    }

    @Test func pipelinedValuesReportExactOffsets() {
        let raw = bytes("+OK\r\n:1\r\n$3\r\nabc\r\n*1\r\n_\r\n")
        var parser = RESPParser()
        raw.withUnsafeBytes { all in
            var offset = 0
            var ends: [Int] = []
            while offset < all.count {
                let (consumed, result) = parser.parse(UnsafeRawBufferPointer(rebasing: all[offset...]))
                offset += consumed
                guard case .value = result else { Issue.record("\(result)"); return }
                ends.append(offset)
            }
            #expect(ends == [5, 9, 18, 25])
        }
        #expect(!parser.hasPartialValue)
        #expect(parser.bufferedByteCount == 0)
    }

    @Test func everySplitGivesTheSameValues() {
        let raw = bytes("%2\r\n+k\r\n*2\r\n$5\r\nhello\r\n,1.5\r\n$-1\r\n~1\r\n=7\r\ntxt:abc\r\n>2\r\n+a\r\n#f\r\n")
        let expected = parseWhole(raw)
        #expect(expected.count == 2)
        for first in 1..<raw.count {
            for second in [1, 2, 3, 7] {
                #expect(parseSplit(raw, chunks: [first, second]) == expected, "split at \(first), then \(second)")
            }
        }
    }

    @Test func partialValueIsReported() {
        var parser = RESPParser()
        var events: [Event] = []
        feed(&parser, bytes("*2\r\n:1\r\n")[...], events: &events)
        #expect(events.isEmpty && parser.hasPartialValue)
        feed(&parser, bytes(":2\r\n")[...], events: &events)
        #expect(events == [.value(.array([.integer(1), .integer(2)]))] && !parser.hasPartialValue)
    }

    @Test func poisonedParserStaysPoisoned() {
        var parser = RESPParser()
        var events: [Event] = []
        feed(&parser, bytes("?")[...], events: &events)
        #expect(events == [.error(.invalidTypeByte(0x3F))])
        let (consumed, result) = bytes("+OK\r\n").withUnsafeBytes { parser.parse($0) }
        #expect(consumed == 0 && result == .error(.invalidTypeByte(0x3F)))
    }
}
