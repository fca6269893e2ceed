import Testing
@testable import SwitchboardHTTP

@Suite struct ParserValidTests {
    @Test func simpleGet() throws {
        let r = try #require(single("GET /hello HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(r.method == "GET")
        #expect(r.url == "/hello")
        #expect(r.path == "/hello")
        #expect(r.query == "")
        #expect(r.version == .http1_1)
        #expect(r.headers.count == 1)
        #expect(r.headers["host"] == "example.com")
        #expect(r.body.isEmpty)
        #expect(r.keepAlive)
        #expect(!r.isUpgrade)
    }

    @Test func querySplit() throws {
        let r = try #require(single("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(r.url == "/a/b?x=1&y=2?z")
        #expect(r.path == "/a/b")
        #expect(r.query == "x=1&y=2?z")
        let empty = try #require(single("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(empty.path == "/p")
        #expect(empty.query == "")
    }

    @Test func headersCaseInsensitiveAndTrimmed() throws {
        let r = try #require(single("GET / HTTP/1.1\r\nHOST: h\r\nX-Thing:  \tv a l \t\r\nx-thing: second\r\nEmpty:\r\n\r\n"))
        #expect(r.headers["host"] == "h")
        #expect(r.headers["x-THING"] == "v a l")
        #expect(r.headers.values(for: "X-Thing") == ["v a l", "second"])
        #expect(r.headers["empty"] == "")
        #expect(r.headers.contains(name: "EMPTY"))
        #expect(Array(r.headers.map(\.name)) == ["HOST", "X-Thing", "x-thing", "Empty"])
    }

    @Test func nonUTF8ValueDecodedLossily() throws {
        var raw = bytes("GET / HTTP/1.1\r\nHost: h\r\nX: a")
        raw += [0xFF, 0xC3]
        raw += bytes("b\r\n\r\n")
        let events = parseWhole(raw)
        let r = try #require(events.first?.request)
        #expect(r.headers["x"] == "a\u{FFFD}\u{FFFD}b")
    }

    @Test func postWithContentLength() throws {
        let r = try #require(single("POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"))
        #expect(r.method == "POST")
        #expect(r.body == bytes("hello world"))
    }

    @Test func repeatedIdenticalContentLength() throws {
        let r = try #require(single("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3, 03\r\n\r\nabc"))
        #expect(r.body == bytes("abc"))
    }

    @Test func chunkedWithExtensionsAndTrailers() throws {
        let raw = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n"
            + "6 ; a=\"b c\";d\r\n world\r\n"
            + "A\r\n0123456789\r\n"
            + "0;last\r\nX-Trailer: t\r\nChecksum: 1\r\n\r\n"
        let r = try #require(single(raw))
        #expect(r.body == bytes("hello world0123456789"))
        #expect(!r.headers.contains(name: "X-Trailer"), "trailers are discarded")
    }

    @Test func chunkedEmptyBody() throws {
        let r = try #require(single("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
        #expect(r.body.isEmpty)
    }

    @Test func keepAliveRules() throws {
        #expect(try #require(single("GET / HTTP/1.1\r\nHost: h\r\n\r\n")).keepAlive)
        #expect(try !#require(single("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")).keepAlive)
        #expect(try !#require(single("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n")).keepAlive)
        #expect(try !#require(single("GET / HTTP/1.0\r\n\r\n")).keepAlive)
        #expect(try #require(single("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")).keepAlive)
        #expect(try !#require(single("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")).keepAlive)
        let r10 = try #require(single("GET / HTTP/1.0\r\n\r\n"))
        #expect(r10.version == .http1_0)
    }

    @Test func pipelinedThreeRequests() throws {
        let a = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
        let b = "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        let c = "POST /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
        let raw = bytes(a + b + c)
        var parser = HTTPRequestParser()
        var events: [Event] = []
        var offsets: [Int] = []
        feed(&parser, raw, events: &events, offsets: &offsets)
        #expect(offsets == [a.utf8.count, a.utf8.count + b.utf8.count, raw.count])
        #expect(events.compactMap(\.request).map(\.path) == ["/one", "/two", "/three"])
        #expect(events.compactMap(\.request).map(\.body) == [[], bytes("abc"), bytes("xy")])
        #expect(!parser.hasPartialRequest)

        // The same stream split at every possible point gives the same requests.
        for cut in 0...raw.count {
            var p = HTTPRequestParser()
            var ev: [Event] = []
            var off: [Int] = []
            feed(&p, Array(raw[..<cut]), events: &ev, offsets: &off)
            feed(&p, Array(raw[cut...]), events: &ev, offsets: &off, base: cut)
            #expect(ev == events, "cut at \(cut)")
            #expect(off == offsets, "cut at \(cut)")
        }
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\n\r\nGET /x?y HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n12345",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
        "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    ])
    func byteByByteMatchesWhole(raw: String) {
        let whole = parseWhole(bytes(raw))
        let split = parseByteByByte(bytes(raw))
        #expect(!whole.isEmpty)
        #expect(whole.allSatisfy { if case .error = $0 { false } else { true } })
        #expect(withoutContinue(whole) == withoutContinue(split))
    }

    @Test func absoluteFormTarget() throws {
        let r = try #require(single("GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(r.url == "http://example.com:8080/p/q?z=1")
        #expect(r.path == "/p/q")
        #expect(r.query == "z=1")
        let bare = try #require(single("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(bare.path == "/")
        #expect(bare.query == "")
        let q = try #require(single("GET http://example.com?a HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(q.path == "/")
        #expect(q.query == "a")
    }

    @Test func asteriskFormForOptions() throws {
        let r = try #require(single("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(r.path == "*")
        #expect(r.url == "*")
    }

    @Test func expectContinueFlow() throws {
        let head = bytes("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n")
        var parser = HTTPRequestParser()
        let first = head.withUnsafeBytes { parser.parse($0) }
        #expect(first.consumed == head.count)
        guard case .expectContinue = first.result else {
            Issue.record("expected expectContinue, got \(first.result)")
            return
        }
        #expect(parser.isReceivingBody)
        #expect(parser.hasPartialRequest)
        // Reported once only: further partial input just needs more.
        let second = bytes("ab").withUnsafeBytes { parser.parse($0) }
        guard case .needMore = second.result else {
            Issue.record("expected needMore, got \(second.result)")
            return
        }
        let third = bytes("cd").withUnsafeBytes { parser.parse($0) }
        guard case .request(let r) = third.result else {
            Issue.record("expected request, got \(third.result)")
            return
        }
        #expect(r.body == bytes("abcd"))
        #expect(!parser.isReceivingBody)
    }

    @Test func expectContinueNotReportedWhenBodyAlreadyHereOrAbsent() {
        let complete = parseWhole(bytes("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"))
        #expect(complete.count == 1 && complete[0].request != nil)
        let noBody = parseWhole(bytes("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"))
        #expect(noBody.count == 1 && noBody[0].request != nil)
        let http10 = parseWhole(bytes("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"))
        #expect(http10.isEmpty, "HTTP/1.0 clients do not get 100 Continue")
        let chunked = parseWhole(bytes("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(chunked == [.expectContinue])
    }

    @Test func upgradeDetection() throws {
        let ws = try #require(single("GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        #expect(ws.isUpgrade)
        #expect(ws.headers.containsToken("upgrade", in: "connection"))
        let noUpgradeHeader = try #require(single("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"))
        #expect(!noUpgradeHeader.isUpgrade)
        let noConnectionToken = try #require(single("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"))
        #expect(!noConnectionToken.isUpgrade)
    }

    @Test func partialAndBodyStateFlags() {
        var parser = HTTPRequestParser()
        #expect(!parser.hasPartialRequest)
        _ = bytes("\r\n").withUnsafeBytes { parser.parse($0) }
        #expect(!parser.hasPartialRequest, "leading empty lines are not a request yet")
        _ = bytes("GE").withUnsafeBytes { parser.parse($0) }
        #expect(parser.hasPartialRequest)
        #expect(!parser.isReceivingBody)
        _ = bytes("T / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n").withUnsafeBytes { parser.parse($0) }
        #expect(parser.isReceivingBody)
        let done = bytes("zz").withUnsafeBytes { parser.parse($0) }
        if case .request = done.result {} else { Issue.record("expected request") }
        #expect(!parser.hasPartialRequest)
        #expect(!parser.isReceivingBody)
    }

    @Test func poisonedParserKeepsFailing() {
        var parser = HTTPRequestParser()
        let first = bytes("BAD\r\n").withUnsafeBytes { parser.parse($0) }
        guard case .error(let e) = first.result else {
            Issue.record("expected error")
            return
        }
        let again = bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n").withUnsafeBytes { parser.parse($0) }
        guard case .error(let e2) = again.result else {
            Issue.record("expected error")
            return
        }
        #expect(e == e2)
        #expect(again.consumed == 0)
    }

    @Test func publicRequestInitDerivesFields() {
        let r = HTTPRequest(method: "GET", url: "/x?y=1", headers: ["Connection": "close"])
        #expect(r.path == "/x")
        #expect(r.query == "y=1")
        #expect(!r.keepAlive)
        let u = HTTPRequest(method: "GET", url: "http://a/b", version: .http1_0, headers: ["Connection": "Upgrade, keep-alive", "Upgrade": "websocket"])
        #expect(u.path == "/b")
        #expect(u.keepAlive)
        #expect(u.isUpgrade)
    }
}
