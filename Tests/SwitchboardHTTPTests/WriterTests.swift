import Testing
@testable import SwitchboardHTTP

@Suite struct WriterTests {
    private func written(_ r: HTTPResponse, keepAlive: Bool = true, headOnly: Bool = false, date: String? = nil) -> String {
        var buffer: [UInt8] = []
        HTTPResponseWriter.write(r, keepAlive: keepAlive, headOnly: headOnly, date: date, into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    @Test func okWithBody() {
        let r = HTTPResponse(status: 200, headers: ["Content-Type": "text/plain"], body: "hello")
        #expect(written(r) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    }

    @Test func appendsToExistingBuffer() {
        var buffer = bytes("prefix|")
        HTTPResponseWriter.write(HTTPResponse(status: 404), keepAlive: true, into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == "prefix|HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func noContentHasNoLengthOrBody() {
        #expect(written(HTTPResponse(status: 204, body: "ignored")) == "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(written(HTTPResponse(status: 304, body: "ignored")) == "HTTP/1.1 304 Not Modified\r\n\r\n")
        #expect(written(HTTPResponse(status: 101, headers: ["Upgrade": "websocket"]))
            == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    }

    @Test func headKeepsLengthDropsBody() {
        #expect(written(HTTPResponse(body: "12345"), headOnly: true) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    }

    @Test func closeAndDate() {
        let date = httpDate(unixSeconds: 784_111_777)
        #expect(written(HTTPResponse(body: "x"), keepAlive: false, date: date)
            == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nx")
    }

    @Test func framingHeadersOwnedByWriter() {
        let r = HTTPResponse(
            headers: ["content-length": "999", "Transfer-Encoding": "chunked", "Connection": "keep-alive", "X": "y"],
            body: "abc")
        #expect(written(r) == "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 3\r\n\r\nabc")
    }

    @Test func injectionDropped() {
        let r = HTTPResponse(headers: HTTPHeaders([
            ("X-Evil", "a\r\nSet-Cookie: pwned"),
            ("X-LF", "a\nb"),
            ("X-NUL", "a\u{0}b"),
            ("Bad Name", "v"),
            ("Bad\r\nName", "v"),
            ("", "v"),
            ("X-Good", "fine\tvalue"),
        ]))
        #expect(written(r) == "HTTP/1.1 200 OK\r\nX-Good: fine\tvalue\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func reasonPhrases() {
        let expected: [Int: String] = [
            100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 204: "No Content",
            301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 426: "Upgrade Required", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported",
        ]
        for (status, phrase) in expected {
            #expect(HTTPResponseWriter.reasonPhrase(for: status) == phrase)
        }
        #expect(HTTPResponseWriter.reasonPhrase(for: 799) == "Unknown")
    }

    @Test func errorResponses() {
        let errors: [HTTPParseError] = [.badRequest("x"), .uriTooLong, .headersTooLarge, .bodyTooLarge, .versionNotSupported, .notImplemented("y")]
        #expect(errors.map(\.status) == [400, 414, 431, 413, 505, 501])
        let r = HTTPResponseWriter.errorResponse(for: .badRequest("secret detail"))
        #expect(r.status == 400)
        #expect(r.headers["content-type"] == "text/plain")
        #expect(r.body == bytes("Bad Request\n"))
        #expect(written(r, keepAlive: false)
            == "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n")
    }

    @Test func dates() {
        #expect(httpDate(unixSeconds: 0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(httpDate(unixSeconds: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(httpDate(unixSeconds: 951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(httpDate(unixSeconds: 1_700_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT")
        #expect(httpDate(unixSeconds: 4_102_444_799) == "Thu, 31 Dec 2099 23:59:59 GMT")
        #expect(httpDate(unixSeconds: -1) == "Wed, 31 Dec 1969 23:59:59 GMT")
    }
}
