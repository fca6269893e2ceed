import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The bad-input table of the HTTP server, end to end: each row is sent on its own connection;
/// the server must answer with exactly that status and close, and a bystander keep-alive
/// connection must be undisturbed. (The parser's own, longer table is in SwitchboardHTTPTests.)
let badRequests: [(name: String, raw: String, status: Int)] = [
    ("garbage request line", "HELLO\r\n\r\n", 400),
    ("lowercase version", "GET / http/1.1\r\nHost: t\r\n\r\n", 400),
    ("two spaces", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("bare LF", "GET / HTTP/1.1\nHost: t\n\n", 400),
    ("control byte in target", "GET /a\u{01}b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    // Refused at the first byte (a request line starts with a method token), not buffered to 414.
    ("1 MB of NUL bytes", String(repeating: "\u{00}", count: 1 << 20), 400),
    ("missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400),
    ("header without colon", "GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
    ("bad Content-Length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12a\r\n\r\n", 400),
    ("negative Content-Length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    ("conflicting Content-Length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ("Content-Length with chunked", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("chunked on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bad chunk size", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("chunk without CRLF", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
    ("unknown transfer coding", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505),
    ("request line over limit", "GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ("head over limit", "GET / HTTP/1.1\r\nHost: t\r\nX: " + String(repeating: "b", count: 17_000) + "\r\n\r\n", 431),
    ("too many headers", "GET / HTTP/1.1\r\nHost: t\r\n" + String(repeating: "X: y\r\n", count: 101) + "\r\n", 431),
    ("body over limit (Content-Length)", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413),
    ("body over limit (chunked)", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413),
]

@Suite("Hostile input over real sockets", .serialized)
struct HostileInputTests {
    @Test("every bad-input row gets its status and a close; bystanders unaffected", arguments: backends)
    func badInputTable(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let bystander = try server.client()
        for row in badRequests {
            let c = try server.client()
            try c.send(row.raw)
            let bytes = try c.readToEnd()
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 \(row.status) "), "\(row.name): got \(text.prefix(60))")
            #expect(text.contains("Connection: close\r\n"), "\(row.name)")
            try bystander.send(get("/n/\(row.status)"))
            #expect(try bystander.readResponse().bodyText == "\(row.status)", "\(row.name)")
        }
        #expect(server.metric("switchboard_http_bad_request_total") == badRequests.filter { $0.status == 400 }.count)
        #expect(server.metric("switchboard_http_uri_too_long_total") == 1)
        #expect(server.metric("switchboard_http_headers_too_large_total") == 2)
        #expect(server.metric("switchboard_http_body_too_large_total") == 2)
        #expect(server.metric("switchboard_http_not_implemented_total") == 1)
        #expect(server.metric("switchboard_http_version_not_supported_total") == 2)
        #expect(server.waitForNoConnectionsExcept(1))
    }

    @Test("bad input after good pipelined requests: good ones answered, then the error", arguments: backends)
    func badAfterGood(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend)
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/n/1") + get("/n/2") + "BAD\r\n\r\n" + get("/n/3"))
        #expect(try c.readResponse().bodyText == "1")
        #expect(try c.readResponse().bodyText == "2")
        #expect(try c.readResponse().status == 400)
        #expect(c.isClosedByServer())
    }

    @Test("slow headers get 408 after the request timeout", arguments: backends)
    func slowHeaders(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend) { $0.io.requestTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let c = try server.client()
        try c.send("GET / HTTP/1.1\r\nHost")
        let text = String(decoding: try c.readToEnd(), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(server.metric("switchboard_http_request_timeout_total") == 1)
        // A slow body too.
        let d = try server.client()
        try d.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        #expect(String(decoding: try d.readToEnd(), as: UTF8.self).hasPrefix("HTTP/1.1 408 "))
        // An idle keep-alive connection is not a slow request: no 408 within the request timeout.
        let e = try server.client(timeoutMilliseconds: 600)
        try e.send(get("/n/x"))
        #expect(try e.readResponse().bodyText == "x")
        #expect(throws: TestClient.Failure.self) { try e.fill() }
    }

    @Test("idle connections are closed after the idle timeout", arguments: backends)
    func idleTimeout(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend) { $0.io.idleTimeoutMilliseconds = 150 }
        defer { server.stop() }
        let c = try server.client()
        try c.send(get("/n/1"))
        #expect(try c.readResponse().bodyText == "1")
        #expect(c.isClosedByServer())
        #expect(server.metric("switchboard_idle_timeouts_total") >= 1)
    }

    @Test("clients that vanish mid-request leave nothing behind", arguments: backends)
    func vanishingClients(backend: IOBackendKind) throws {
        // Timers far beyond the wait below: the server must notice each client's EOF or reset
        // itself, not let a request or idle timer clean up after it.
        let server = try ServerFixture(backend: backend) {
            $0.io.requestTimeoutMilliseconds = 60_000
            $0.io.idleTimeoutMilliseconds = 60_000
        }
        defer { server.stop() }
        let partials = [
            "GET / HTTP/1.1\r\nHo",
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "G",
        ]
        for _ in 0..<50 {
            for p in partials {
                let c = try server.client()
                try c.send(p)
            }  // each client is closed (deinit) right here, mid-request
        }
        // A client that resets the connection while a big response is being written.
        for _ in 0..<20 {
            let c = try server.client()
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            try c.send(get("/big?n=4000000"))
        }
        #expect(server.waitForNoConnections())
        let c = try server.client()
        try c.send(get("/n/alive"))
        #expect(try c.readResponse().bodyText == "alive")
    }

    @Test("a client that never reads is cut off at the send-queue limit; others unaffected", arguments: backends)
    func slowReader(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend) { $0.io.maxSendQueueBytes = 256 * 1024 }
        defer { server.stop() }
        let slow = try server.client()
        var rcv: Int32 = 4096
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
        let other = try server.client()
        // Ask for 64 MiB of responses without reading any of it.
        var sentRequests = 0
        for _ in 0..<64 {
            do { try slow.send(get("/big?n=1048576")); sentRequests += 1 } catch { break }
        }
        #expect(sentRequests > 0)
        #expect(waitUntil { server.metric("switchboard_http_response_over_send_limit_total") >= 1 })
        try other.send(get("/n/ok"))
        #expect(try other.readResponse().bodyText == "ok")
        #expect(server.metric("switchboard_send_queue_limit_hits_total") >= 1)
    }

    @Test("connections over maxConnectionsPerShard are closed at once and counted", arguments: backends)
    func connectionLimit(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1) { $0.io.maxConnectionsPerShard = 2 }
        defer { server.stop() }
        let a = try server.client(), b = try server.client()
        try a.send(get("/n/a")); #expect(try a.readResponse().bodyText == "a")
        try b.send(get("/n/b")); #expect(try b.readResponse().bodyText == "b")
        let c = try server.client()
        #expect(c.isClosedByServer())
        #expect(server.metric("switchboard_connections_rejected_total") == 1)
        try a.send(get("/n/a2")); #expect(try a.readResponse().bodyText == "a2")
    }
}

extension ServerFixture {
    func waitForNoConnectionsExcept(_ n: Int) -> Bool {
        waitUntil(timeoutMilliseconds: 10_000) { broker.openConnections == n }
    }
}
