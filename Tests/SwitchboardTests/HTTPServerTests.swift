import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP server over real sockets", .serialized)
struct HTTPServerTests {
    @Test("health endpoint: exact bytes", arguments: backends)
    func health(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/health"))
        let r = try c.readResponse()
        #expect(r.text == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}")
        try c.send("HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n")
        let h = try c.readResponse(headOnly: true)
        #expect(h.text == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n")
    }

    @Test("handler routes, 404 default, request fields", arguments: backends)
    func handlerRoutes(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send("POST /echo?a=1&b=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.bodyText == "POST /echo?a=1&b=2 q=a=1&b=2\nhello")
        try c.send(get("/missing"))
        let m = try c.readResponse()
        #expect(m.text == "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n")
        try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n")
        #expect(try c.readResponse().bodyText == "POST /echo q=\nabcde")
    }

    @Test("keep-alive: 200 requests on one connection", arguments: backends)
    func keepAlive(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        for i in 0..<200 {
            try c.send(get("/n/\(i)"))
            #expect(try c.readResponse().bodyText == "\(i)")
        }
        #expect(server.metric("switchboard_connections_accepted_total") == 1)
    }

    @Test("pipelining: 100 requests in one write are answered in order", arguments: backends)
    func pipelining(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        var batch = ""
        for i in 0..<100 { batch += get("/n/\(i)") }
        try c.send(batch)
        for i in 0..<100 {
            let r = try c.readResponse()
            #expect(r.bodyText == "\(i)")
        }
        // Split at awkward places: one byte at a time for a few requests.
        let bytes = Array((get("/n/a") + get("/n/b")).utf8)
        for b in bytes { try c.send([b]) }
        #expect(try c.readResponse().bodyText == "a")
        #expect(try c.readResponse().bodyText == "b")
    }

    @Test("300 concurrent keep-alive clients × 20 requests", arguments: backends)
    func manyClients(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let clients = try (0..<300).map { _ in try server.client() }
        for round in 0..<20 {
            for (i, c) in clients.enumerated() { try c.send(get("/n/\(i)-\(round)")) }
            for (i, c) in clients.enumerated() {
                #expect(try c.readResponse().bodyText == "\(i)-\(round)")
            }
        }
        let perShard = server.broker.metricsText().split(separator: "\n").filter { $0.hasPrefix("switchboard_connections_open{") }
        #expect(perShard.count == 2)
        // Least-loaded placement spreads the 300 connections evenly.
        for line in perShard { #expect(line.hasSuffix(" 150")) }
    }

    @Test("large responses are written completely (partial sends)", arguments: backends)
    func largeResponse(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/big?n=3000000") + get("/big?n=10") + get("/big?n=1000000"))
        let a = try c.readResponse()
        #expect(a.body.count == 3_000_000 && a.body.allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(try c.readResponse().body.count == 10)
        #expect(try c.readResponse().body.count == 1_000_000)
    }

    @Test("Expect: 100-continue", arguments: backends)
    func expectContinue(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        try c.fill()
        #expect(String(decoding: c.buffered, as: UTF8.self) == "HTTP/1.1 100 Continue\r\n\r\n")
        _ = try c.readResponse(headOnly: true)  // drop the interim response
        try c.send("abc")
        #expect(try c.readResponse().bodyText == "POST /echo q=\nabc")
    }

    @Test("Connection: close and HTTP/1.0 close after the response", arguments: backends)
    func connectionClose(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/hello", "Connection: close\r\n") + get("/hello"))
        let bytes = try c.readToEnd()
        #expect(String(decoding: bytes, as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        let d = try server.client()
        try d.send("GET /hello HTTP/1.0\r\n\r\n")
        #expect(String(decoding: try d.readToEnd(), as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        let e = try server.client()
        try e.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try e.readResponse().text == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello")
        try e.send(get("/hello"))
        #expect(try e.readResponse().bodyText == "hello")
    }

    /// The keep-alive HTTP/1.1 GET is answered from the shard's shared bytes (`ResponseCache`);
    /// every other framing goes through the writer. Both must give the writer's exact bytes.
    @Test("health on every framing: shared bytes and written ones are the same", arguments: backends)
    func healthFramings(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1)
        defer { server.stop() }
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
        let body = "{\"status\":\"ok\"}"
        let c = try server.client()
        // Pipelined, behind a handler's answer: shared bytes, twice in a row, in order.
        try c.send(get("/n/1") + get("/health") + get("/health"))
        #expect(try c.readResponse().bodyText == "1")
        #expect(try c.readResponse().text == ok + "\r\n" + body)
        #expect(try c.readResponse().text == ok + "\r\n" + body)
        let d = try server.client()
        try d.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try d.readResponse().text == ok + "Connection: keep-alive\r\n\r\n" + body)
        try d.send(get("/health", "Connection: close\r\n"))
        #expect(String(decoding: try d.readToEnd(), as: UTF8.self) == ok + "Connection: close\r\n\r\n" + body)
        #expect(server.metric("switchboard_http_responses_2xx_total") == 5)
    }

    /// Built-in routes' requests come out of the parser bare (nothing built) unless they have
    /// a body or upgrade headers (then the request is built and routed the general way): the
    /// same bytes on every framing either way.
    @Test("built-in routes: bare requests and built ones get the same bytes", arguments: backends)
    func bareAndBuilt(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1)
        defer { server.stop() }
        // (bare request, the same with upgrade headers, the same with a body): the answer, read to its end when it closes.
        let framings: [(request: (String) -> String, headOnly: Bool, closes: Bool)] = [
            ({ "GET /health HTTP/1.1\r\nHost: t\r\n\($0)\r\n" }, false, false),
            ({ "HEAD /health HTTP/1.1\r\nHost: t\r\n\($0)\r\n" }, true, false),
            ({ "GET http://t/health?x=1 HTTP/1.1\r\nHost: t\r\n\($0)\r\n" }, false, false),
            ({ "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\($0)\r\n" }, false, false),
            ({ "GET /health HTTP/1.0\r\n\($0)\r\n" }, false, true),
            ({ "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\($0)\r\n" }, false, true),
        ]
        let variants = ["", "Connection: upgrade\r\nUpgrade: h2c\r\n", "Content-Length: 1\r\n"]
        for framing in framings {
            var answers: [String] = []
            for extra in variants {
                let c = try server.client()
                var request = framing.request(extra)
                if extra.hasPrefix("Content-Length") { request += "x" }
                try c.send(request)
                if framing.closes {
                    answers.append(String(decoding: try c.readToEnd(), as: UTF8.self))
                } else {
                    answers.append(try c.readResponse(headOnly: framing.headOnly).text)
                }
            }
            #expect(answers[0].hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"), "\(answers[0])")
            #expect(answers[1] == answers[0] && answers[2] == answers[0], "\(framing.request(""))\n\(answers)")
        }
        #expect(server.metric("switchboard_http_requests_total") == framings.count * variants.count)
        #expect(server.metric("switchboard_http_responses_2xx_total") == framings.count * variants.count)
        // The metrics route goes the same way (its body changes between requests).
        let m = try server.client()
        try m.send(get("/metrics") + get("/metrics", "Connection: upgrade\r\nUpgrade: h2c\r\n"))
        for _ in 0..<2 {
            let r = try m.readResponse()
            #expect(r.status == 200 && r.header("Content-Type") == "text/plain; version=0.0.4")
        }
    }

    /// A String compares by canonical equivalence: `/\u{212A}` (KELVIN SIGN) is the path `/K`.
    /// Such a request is not bare (bytes decide only for ASCII); routed the general way, it
    /// still reaches the health route, as it did before requests came out bare.
    @Test("a non-ASCII path canonically equal to the health path is still health", arguments: backends)
    func canonicallyEqualPath(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1) { $0.healthPath = "/K" }
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/\u{212A}") + get("/K"))
        let kelvin = try c.readResponse().text
        #expect(kelvin.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"))
        #expect(try c.readResponse().text == kelvin)
    }

    @Test("health with the Date header: the shared bytes carry the current date", arguments: backends)
    func healthDate(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1) { $0.sendDateHeader = true }
        defer { server.stop() }
        let c = try server.client()
        for _ in 0..<2 {
            let before = time(nil)
            try c.send(get("/health"))
            let text = try c.readResponse().text
            let after = time(nil)
            // The date is the shard's second at the last tick: between these two, give or take the tick.
            let dates = (before - 1...after).map { "Date: \(httpDateText($0))\r\n" }
            #expect(dates.contains { text == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\($0)\r\n{\"status\":\"ok\"}" }, "\(text)")
        }
    }
}

/// IMF-fixdate through Glibc's `strftime` (an implementation independent of `httpDate`).
private func httpDateText(_ seconds: time_t) -> String {
    var t = seconds
    var parts = tm()
    gmtime_r(&t, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let n = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
