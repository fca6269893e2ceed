import Testing
@testable import SwitchboardHTTP

/// A head that arrives whole is parsed in place (never copied into the parser's buffer); one
/// cut by the end of a read is copied and continued from the buffer. Both must give the same
/// requests and errors, wherever the cut is.
@Suite struct HeadInPlaceTests {
    static let streams: [String] = [
        "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Long: " + String(repeating: "v", count: 40) + "\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nHEAD /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /n HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n",
        // Errors: bare LF inside the head, a bad field value byte, a bad request-line byte.
        "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\u{7F}b\r\n\r\n",
        "GET /a\u{1}b HTTP/1.1\r\nHost: h\r\n\r\n",
    ]

    @Test(arguments: streams)
    func everyCutGivesTheSameEvents(stream: String) {
        let input = bytes(stream)
        let whole = parseWhole(input)
        #expect(!whole.isEmpty)
        for cut in 0...input.count {
            var parser = HTTPRequestParser()
            var events: [Event] = []
            var offsets: [Int] = []
            feed(&parser, Array(input[..<cut]), events: &events, offsets: &offsets)
            if case .error = events.last {} else {
                feed(&parser, Array(input[cut...]), events: &events, offsets: &offsets, base: cut)
            }
            #expect(withoutContinue(events) == withoutContinue(whole), "cut at \(cut)")
        }
    }

    /// Each request's headers are its own: the field-range list keeps entries from longer
    /// heads before it (overwritten in turn), trailers counted as fields included.
    @Test func eachRequestHasOnlyItsOwnFields() throws {
        let stream = "GET /1 HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
            + "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
            + "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT1: a\r\nT2: b\r\n\r\n"
            + "GET /4 HTTP/1.1\r\nHost: h\r\nD: 4\r\n\r\n"
        for events in [parseWhole(bytes(stream)), parseByteByByte(bytes(stream))] {
            let names = events.map { $0.request.map { Array($0.headers).map(\.name) } ?? [] }
            #expect(names == [["Host", "A", "B", "C"], ["Host"], ["Host", "Transfer-Encoding"], ["Host", "D"]])
        }
    }

    /// The limits count the head in place as they count the buffered one.
    @Test func limitsAtTheirEdgeWholeAndCut() {
        let limits = HTTPLimits(maxRequestLineBytes: 25, maxHeaderBytes: 40)
        let line = "GET /" + String(repeating: "a", count: 11) + " HTTP/1.1\r\n"  // 25 bytes and CRLF
        let fits = line + "Host: h\r\n\r\n"
        #expect(bytes(line).count == 27 && bytes(fits).count <= 40)
        #expect(parseWhole(bytes(fits), limits: limits).first?.request?.path == "/" + String(repeating: "a", count: 11))
        let long = errorOf(bytes("GET /" + String(repeating: "a", count: 12) + " HTTP/1.1\r\nHost: h\r\n\r\n"), limits: limits)
        #expect(long.whole == .uriTooLong && long.split == .uriTooLong)
        let tooLarge = line + "Host: h\r\nX: " + String(repeating: "y", count: 20) + "\r\n\r\n"
        let errors = errorOf(bytes(tooLarge), limits: limits)
        #expect(errors.whole == .headersTooLarge && errors.split == .headersTooLarge)
    }
}

@Suite struct ByteScanTests {
    /// The eight-bytes-at-a-time scan agrees with the byte test for every byte value at every
    /// position of every length up to 20, and from every start offset.
    @Test func allFieldValueBytesAgreesWithTheByteTest() {
        for length in 0...20 {
            for position in 0..<max(length, 1) {
                for value in 0...255 {
                    var line = [UInt8](repeating: UInt8(ascii: "v"), count: length + 3)
                    if length > 0 { line[position + 3] = UInt8(value) }
                    let range = 3..<(3 + length)
                    let expected = range.allSatisfy { ASCII.isFieldValueByte(line[$0]) }
                    let got = line.withUnsafeBufferPointer { ASCII.allFieldValueBytes($0, range) }
                    if got != expected {
                        Issue.record("length \(length), byte \(value) at \(position): \(got)")
                        return
                    }
                }
            }
        }
    }

    /// Words the shortcut may flag without a bad byte in them are still accepted.
    @Test func mayHoldControlNeverMissesAndFalseAlarmsAreHarmless() {
        for value in 0...255 {
            for position in 0..<8 {
                var word: UInt64 = 0x6161_6161_6161_6161
                word &= ~(UInt64(0xFF) << (8 * UInt64(position)))
                word |= UInt64(value) << (8 * UInt64(position))
                if value < 0x20 || value == 0x7F { #expect(ASCII.mayHoldControl(word)) }
            }
        }
        // 0x80 and up are obs-text: accepted, whatever the shortcut says.
        let high = [UInt8](repeating: 0xFF, count: 16) + [0x80, 0x9F, 0xA0, 0x20, 0x09, 0x7E, 0x21, 0xC3]
        #expect(high.withUnsafeBufferPointer { ASCII.allFieldValueBytes($0, 0..<$0.count) })
    }

    /// An origin-form target is split on the way through the request line: the same ranges
    /// as `RequestTarget.split`.
    @Test(arguments: ["/", "/a", "/?", "/a?", "/a?b", "/a?b?c", "/??", "/a/b/c?x=1&y=2", "/%3F?q"])
    func originFormSplitMatchesRequestTarget(target: String) throws {
        let line = bytes("GET \(target) HTTP/1.1")
        try line.withUnsafeBufferPointer { b in
            guard case .success(let parsed) = LineSyntax.requestLine(b, 0..<b.count) else {
                Issue.record("not parsed"); return
            }
            let (path, query) = RequestTarget.split(b, parsed.target)
            #expect(parsed.path == path)
            #expect(parsed.query == query)
            _ = try #require(Optional(parsed))
        }
    }
}
