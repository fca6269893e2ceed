import Testing
@testable import SwitchboardHTTP
import SwitchboardDocMirror

struct BadInput: CustomTestStringConvertible, Sendable {
    var name: String
    var raw: [UInt8]
    var expected: HTTPParseError
    var testDescription: String { name }
}

private func row(_ name: String, _ raw: String, _ expected: HTTPParseError) -> BadInput {
    BadInput(name: name, raw: Array(raw.utf8), expected: expected)
}

private let host = "Host: h\r\n"
private let bad = HTTPParseError.badRequest("")
private let notImpl = HTTPParseError.notImplemented("")

/// Every parsing rule, violated once. Mirrored in Sources/SwitchboardHTTP/BAD_INPUTS.md.
let badInputs: [BadInput] = [
    // Request line
    row("method with non-token byte", "G@T / HTTP/1.1\r\n\(host)\r\n", bad),
    row("empty method", " / HTTP/1.1\r\n\(host)\r\n", bad),
    row("NUL bytes instead of a request line", "\u{00}\u{00}\u{00}\u{00}", bad),
    row("method longer than 32 bytes", String(repeating: "M", count: 33) + " / HTTP/1.1\r\n\(host)\r\n", bad),
    row("double space after method", "GET  / HTTP/1.1\r\n\(host)\r\n", bad),
    row("double space before version", "GET /  HTTP/1.1\r\n\(host)\r\n", bad),
    row("trailing space after version", "GET / HTTP/1.1 \r\n\(host)\r\n", bad),
    row("tab as separator", "GET\t/ HTTP/1.1\r\n\(host)\r\n", bad),
    row("missing version", "GET /\r\n\(host)\r\n", bad),
    row("missing target", "GET\r\n\(host)\r\n", bad),
    row("target not starting with /", "GET index.html HTTP/1.1\r\n\(host)\r\n", bad),
    row("asterisk-form with GET", "GET * HTTP/1.1\r\n\(host)\r\n", bad),
    row("authority-form target", "CONNECT example.com:443 HTTP/1.1\r\n\(host)\r\n", bad),
    row("absolute-form without authority", "GET http:///x HTTP/1.1\r\n\(host)\r\n", bad),
    row("control byte in target", "GET /a\u{01}b HTTP/1.1\r\n\(host)\r\n", bad),
    row("DEL in target", "GET /a\u{7F}b HTTP/1.1\r\n\(host)\r\n", bad),
    row("request line over 8192 bytes", "GET /" + String(repeating: "a", count: 8192) + " HTTP/1.1\r\n\(host)\r\n", .uriTooLong),
    row("HTTP/2.0", "GET / HTTP/2.0\r\n\(host)\r\n", .versionNotSupported),
    row("HTTP/0.9", "GET / HTTP/0.9\r\n\(host)\r\n", .versionNotSupported),
    row("HTTP/1.2", "GET / HTTP/1.2\r\n\(host)\r\n", .versionNotSupported),
    row("HTTP/3.7", "GET / HTTP/3.7\r\n\(host)\r\n", .versionNotSupported),
    row("HTTX/1.1", "GET / HTTX/1.1\r\n\(host)\r\n", bad),
    row("HTTP/1.1x", "GET / HTTP/1.1x\r\n\(host)\r\n", bad),
    row("lowercase http/1.1", "GET / http/1.1\r\n\(host)\r\n", bad),
    row("HTTP/1", "GET / HTTP/1\r\n\(host)\r\n", bad),
    row("HTTP/1.a", "GET / HTTP/1.a\r\n\(host)\r\n", bad),
    // Line endings
    row("bare LF after request line", "GET / HTTP/1.1\n\(host)\r\n", bad),
    row("bare CR in request line", "GET /\r HTTP/1.1\r\n\(host)\r\n", bad),
    row("bare LF after header", "GET / HTTP/1.1\r\nHost: h\n\r\n", bad),
    row("bare CR in header value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", bad),
    row("bare LF ending the head", "GET / HTTP/1.1\r\n\(host)\n", bad),
    row("nine leading empty lines", String(repeating: "\r\n", count: 9) + "GET / HTTP/1.1\r\n\(host)\r\n", bad),
    row("leading bare LF", "\nGET / HTTP/1.1\r\n\(host)\r\n", bad),
    // Header fields
    row("whitespace before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", bad),
    row("empty field name", "GET / HTTP/1.1\r\n\(host): x\r\n\r\n", bad),
    row("field without colon", "GET / HTTP/1.1\r\n\(host)NoColon\r\n\r\n", bad),
    row("non-token byte in name", "GET / HTTP/1.1\r\n\(host)X(y): z\r\n\r\n", bad),
    row("obs-fold continuation", "GET / HTTP/1.1\r\n\(host)X: a\r\n b\r\n\r\n", bad),
    row("obs-fold with tab", "GET / HTTP/1.1\r\n\(host)X: a\r\n\tb\r\n\r\n", bad),
    row("NUL in value", "GET / HTTP/1.1\r\n\(host)X: a\u{0}b\r\n\r\n", bad),
    row("control byte in value", "GET / HTTP/1.1\r\n\(host)X: a\u{1B}b\r\n\r\n", bad),
    row("DEL in value", "GET / HTTP/1.1\r\n\(host)X: a\u{7F}b\r\n\r\n", bad),
    row("head over 16384 bytes", "GET / HTTP/1.1\r\n\(host)X: " + String(repeating: "v", count: 16384) + "\r\n\r\n", .headersTooLarge),
    row("101 header fields", "GET / HTTP/1.1\r\n\(host)" + String(repeating: "X: y\r\n", count: 100) + "\r\n", .headersTooLarge),
    // Host
    row("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", bad),
    row("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", bad),
    // Content-Length
    row("Content-Length not a number", "POST / HTTP/1.1\r\n\(host)Content-Length: abc\r\n\r\n", bad),
    row("Content-Length with plus sign", "POST / HTTP/1.1\r\n\(host)Content-Length: +5\r\n\r\n", bad),
    row("negative Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n", bad),
    row("space inside Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 1 0\r\n\r\n", bad),
    row("empty Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: \r\n\r\n", bad),
    row("hex Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 0x10\r\n\r\n", bad),
    row("Content-Length overflow", "POST / HTTP/1.1\r\n\(host)Content-Length: 99999999999999999999999\r\n\r\n", bad),
    row("two different Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", bad),
    row("Content-Length list with different values", "POST / HTTP/1.1\r\n\(host)Content-Length: 5, 6\r\n\r\nhello", bad),
    row("Content-Length list with empty element", "POST / HTTP/1.1\r\n\(host)Content-Length: 5,\r\n\r\nhello", bad),
    row("Content-Length over 1 MiB", "POST / HTTP/1.1\r\n\(host)Content-Length: 1048577\r\n\r\n", .bodyTooLarge),
    // Transfer-Encoding
    row("Transfer-Encoding with Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad),
    row("Content-Length after Transfer-Encoding", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", bad),
    row("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad),
    row("Transfer-Encoding gzip", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\n", notImpl),
    row("Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n", notImpl),
    row("Transfer-Encoding with parameters", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked;q=1\r\n\r\n", notImpl),
    row("chunked not last", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, gzip\r\n\r\n", bad),
    row("chunked not last across fields", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", bad),
    row("chunked twice", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, chunked\r\n\r\n", bad),
    row("empty Transfer-Encoding", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: \r\n\r\n", bad),
    // Chunked framing
    row("non-hex chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nzz\r\n", bad),
    row("0x chunk size prefix", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", bad),
    row("empty chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n\r\n", bad),
    row("negative chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n-1\r\n", bad),
    row("17 hex digit chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n0\r\n\r\n", bad),
    row("whitespace after chunk size without extension", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", bad),
    row("bare LF after chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", bad),
    row("control byte in chunk extension", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5;a\u{1}\r\nhello\r\n0\r\n\r\n", bad),
    row("chunk line over 1024 bytes", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5;" + String(repeating: "e", count: 1023) + "\r\nhello\r\n0\r\n\r\n", bad),
    row("chunk data longer than size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n", bad),
    row("chunk data followed by bare LF", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", bad),
    row("chunk sizes summing over 1 MiB", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n80000\r\n" + String(repeating: "a", count: 0x80000) + "\r\n80001\r\n", .bodyTooLarge),
    row("huge chunk size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", .bodyTooLarge),
    row("invalid trailer field", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: x\r\n\r\n", bad),
    row("obs-fold in trailer", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nT: a\r\n b\r\n\r\n", bad),
    row("bare LF ending trailers", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\n\n", bad),
]

@Suite struct BadInputTests {
    @Test func tableCoversEveryRule() {
        #expect(badInputs.count >= 35)
        #expect(Set(badInputs.map(\.name)).count == badInputs.count, "row names are unique")
    }

    @Test(arguments: badInputs)
    func rejected(_ input: BadInput) {
        let (whole, split) = errorOf(input.raw)
        #expect(sameKind(whole, input.expected), "whole: got \(String(describing: whole))")
        #expect(sameKind(split, input.expected), "byte by byte: got \(String(describing: split))")
        #expect(whole?.status == input.expected.status)
    }

    @Test(arguments: badInputs)
    func rejectedWhenStreamed(_ input: BadInput) {
        for step in [input.raw.count, 1] {
            let events = streamEvents(input.raw, step: step)
            guard case .error(let error)? = events.last else {
                Issue.record("streamed, \(step) bytes per call: no error, got \(events)")
                continue
            }
            #expect(error.status == input.expected.status, "streamed, \(step) bytes per call")
        }
    }

    /// The Markdown copy for the docs must list exactly the table above.
    @Test func markdownMirrorsTable() throws {
        let rendered = renderBadInputsMarkdown()
        let onDisk = try DocMirror.committed("Sources/SwitchboardHTTP/BAD_INPUTS.md", rendered: rendered, regenerate: "REGENERATE_BAD_INPUTS")
        #expect(onDisk == rendered, "run the tests with REGENERATE_BAD_INPUTS=1 to rewrite BAD_INPUTS.md")
    }
}

func renderBadInputsMarkdown() -> String {
    var out = """
    # Rejected inputs

    Every request below is rejected by `HTTPRequestParser` with the given status, whether fed
    whole or one byte at a time, and whether its body is buffered or streamed (`parseEvents`). Generated from `Tests/SwitchboardHTTPTests/BadInputTests.swift`
    (`markdownMirrorsTable` fails when they drift apart).

    | Rule | Input | Status |
    |---|---|---|

    """
    for input in badInputs {
        out += "| \(input.name) | `\(DocMirror.markdownBytes(input.raw))` | \(input.expected.status) |\n"
    }
    return out
}
