import Testing
@testable import SwitchboardHTTP

/// Exactly at each limit passes; one byte (or field) over fails, fed whole and byte by byte.
@Suite struct LimitTests {
    private func outcome(_ raw: [UInt8], _ limits: HTTPLimits) -> (ok: Bool, error: HTTPParseError?) {
        let whole = parseWhole(raw, limits: limits)
        let split = parseByteByByte(raw, limits: limits)
        #expect(withoutContinue(whole) == withoutContinue(split))
        if case .error(let e) = whole.last { return (false, e) }
        return (whole.last?.request != nil, nil)
    }

    @Test func requestLine() {
        let limits = HTTPLimits(maxRequestLineBytes: 64)
        func line(_ length: Int) -> String {
            "GET /" + String(repeating: "a", count: length - "GET / HTTP/1.1".utf8.count) + " HTTP/1.1"
        }
        #expect(line(64).utf8.count == 64)
        #expect(outcome(bytes(line(64) + "\r\nHost: h\r\n\r\n"), limits).ok)
        #expect(outcome(bytes(line(65) + "\r\nHost: h\r\n\r\n"), limits).error == .uriTooLong)
        // Detected before the CRLF arrives, so an endless line is never buffered.
        #expect(outcome(bytes(line(64) + "\r"), limits).error == nil)
        #expect(outcome(bytes(line(65)), limits).error == .uriTooLong)
    }

    @Test func headBytes() {
        let limits = HTTPLimits(maxHeaderBytes: 200)
        func head(_ total: Int) -> String {
            let fixed = "GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".utf8.count
            return "GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "v", count: total - fixed) + "\r\n\r\n"
        }
        #expect(head(200).utf8.count == 200)
        #expect(outcome(bytes(head(200)), limits).ok)
        #expect(outcome(bytes(head(201)), limits).error == .headersTooLarge)
        // Streaming: a head that never ends fails as soon as it passes the limit.
        var parser = HTTPRequestParser(limits: limits)
        let endless = bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "v", count: 500))
        let result = endless.withUnsafeBytes { parser.parse($0) }
        guard case .error(.headersTooLarge) = result.result else {
            Issue.record("expected 431, got \(result.result)")
            return
        }
        #expect(parser.bufferedByteCount <= 200)
    }

    @Test func headerCount() {
        let limits = HTTPLimits(maxHeaderCount: 5)
        let four = String(repeating: "X: y\r\n", count: 4)
        #expect(outcome(bytes("GET / HTTP/1.1\r\nHost: h\r\n" + four + "\r\n"), limits).ok)
        #expect(outcome(bytes("GET / HTTP/1.1\r\nHost: h\r\n" + four + "Z: 1\r\n\r\n"), limits).error == .headersTooLarge)
    }

    @Test func bodyContentLength() {
        let limits = HTTPLimits(maxBodyBytes: 100)
        let ok = outcome(bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + String(repeating: "b", count: 100)), limits)
        #expect(ok.ok)
        // Rejected right after the head: the body is never read.
        #expect(outcome(bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n"), limits).error == .bodyTooLarge)
    }

    @Test func bodyChunked() {
        let limits = HTTPLimits(maxBodyBytes: 100)
        let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        let fifty = String(repeating: "c", count: 50)
        #expect(outcome(bytes(head + "32\r\n\(fifty)\r\n32\r\n\(fifty)\r\n0\r\n\r\n"), limits).ok)
        #expect(outcome(bytes(head + "32\r\n\(fifty)\r\n33\r\n"), limits).error == .bodyTooLarge)
    }

    @Test func chunkLine() {
        let limits = HTTPLimits(maxChunkLineBytes: 10)
        let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(outcome(bytes(head + "5;12345678\r\nhello\r\n0\r\n\r\n"), limits).ok)
        #expect(outcome(bytes(head + "5;123456789\r\nhello\r\n0\r\n\r\n"), limits).error == .badRequest("chunk line too long"))
        // Streaming: detected without waiting for the CRLF.
        #expect(outcome(bytes(head + "5;123456789"), limits).error == .badRequest("chunk line too long"))
    }

    @Test func trailersCountTowardHeadBytes() {
        let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        let trailers = "0\r\nT: 12345\r\n\r\n"
        let headAndTrailers = head.utf8.count + "T: 12345\r\n\r\n".utf8.count
        #expect(outcome(bytes(head + trailers), HTTPLimits(maxHeaderBytes: headAndTrailers)).ok)
        #expect(outcome(bytes(head + trailers), HTTPLimits(maxHeaderBytes: headAndTrailers - 1)).error == .headersTooLarge)
    }

    @Test func leadingEmptyLines() {
        let request = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(outcome(bytes(String(repeating: "\r\n", count: 8) + request), HTTPLimits()).ok)
        #expect(!outcome(bytes(String(repeating: "\r\n", count: 9) + request), HTTPLimits()).ok)
    }
}
