import Testing
@testable import SwitchboardHTTP

@Suite struct StreamedBodyTests {
    /// Pipelined: a fixed-length body, a bodiless GET, a chunked body with trailers, a HEAD.
    static let pipeline = bytes(
        "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
        + "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
        + "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nthere\r\n0\r\nT: x\r\n\r\n"
        + "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n")

    @Test(arguments: [1, 2, 3, 7, 16, 64, 10_000])
    func streamedMatchesBuffered(step: Int) {
        let buffered = parseWhole(Self.pipeline).compactMap(\.request)
        let streamed = streamEvents(Self.pipeline, step: step)
        #expect(buffered.count == 4)
        var expected: [StreamEvent] = []
        for r in buffered {
            if r.body.isEmpty {
                expected.append(.request(r))
            } else {
                var head = r
                head.body = []
                expected += [.head(head), .body(r.body)]
            }
        }
        #expect(streamed == expected)
    }

    @Test func bodyEndIsReportedWithNoInputLeft() throws {
        var parser = HTTPRequestParser()
        let request = bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        try request.withUnsafeBytes { raw in
            var (consumed, event) = parser.parseEvents(raw)
            guard case .head = event else { Issue.record("no head: \(event)"); return }
            parser.streamBody()
            (consumed, event) = parser.parseEvents(UnsafeRawBufferPointer(rebasing: raw[consumed...]))
            guard case .bodyPart(let range) = event else { Issue.record("no part: \(event)"); return }
            #expect(range == 0..<3)
            #expect(parser.hasEventPending)
            let (none, end) = parser.parseEvents(UnsafeRawBufferPointer(start: nil, count: 0))
            #expect(none == 0)
            guard case .bodyEnd = end else { Issue.record("no end: \(end)"); return }
            #expect(!parser.hasEventPending)
            #expect(!parser.hasPartialRequest)
            _ = try #require(Optional(consumed))
        }
    }

    @Test func streamedChunkedBodyPastTheLimitIs413() {
        let limits = HTTPLimits(maxBodyBytes: 8)
        let events = streamEvents(bytes("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), step: 4, limits: limits)
        #expect(events.last == .error(.bodyTooLarge))
    }

    @Test func expectContinueAfterHead() {
        var parser = HTTPRequestParser()
        let head = bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        head.withUnsafeBytes { raw in
            let (consumed, event) = parser.parseEvents(raw)
            #expect(consumed == raw.count)
            guard case .head = event else { Issue.record("no head: \(event)"); return }
            parser.streamBody()
            #expect(parser.hasEventPending)
            guard case .expectContinue = parser.parseEvents(UnsafeRawBufferPointer(rebasing: raw[consumed...])).event else {
                Issue.record("no 100-continue"); return
            }
        }
    }
}
