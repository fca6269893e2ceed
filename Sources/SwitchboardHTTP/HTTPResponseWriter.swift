/// Serializes responses into a caller-owned byte buffer.
///
/// The writer owns message framing (`Content-Length`, `Transfer-Encoding`, `Connection`) so that
/// the declared length can never disagree with the bytes sent.
public enum HTTPResponseWriter {
    /// Appends the serialized `response` to `buffer`.
    ///
    /// Writes the status line with its reason phrase; the user headers except `Content-Length`,
    /// `Transfer-Encoding` and `Connection`, and except any header whose name is not a valid token
    /// or whose name or value contains CR, LF or NUL (dropped, so no response splitting); then
    /// `Content-Length` (omitted for 1xx, 204 and 304), `Connection: close` when `keepAlive` is false,
    /// `Date` when `date` is given; then the body unless `headOnly` or the status forbids one.
    ///
    /// - Parameters:
    ///   - keepAlive: whether the connection stays open after this response.
    ///   - headOnly: the request was `HEAD`: headers (including the real `Content-Length`) but no body.
    ///   - date: a preformatted ``httpDate(unixSeconds:)`` value, usually cached per second.
    ///
    /// `requestVersion`: an HTTP/1.0 client keeps the connection only when told so, so a
    /// keep-alive answer to it carries `Connection: keep-alive`.
    public static func write(_ response: HTTPResponse, keepAlive: Bool, headOnly: Bool = false, date: String? = nil,
                             requestVersion: HTTPVersion = .http1_1, into buffer: inout [UInt8]) {
        let status = response.status
        let bodyForbidden = (100...199).contains(status) || status == 204 || status == 304
        let reason = reasonPhrase(for: status)
        // The head is written through a pointer into room made once (an `append` per piece cost
        // ~60 instructions each, ~20 pieces per response), then trimmed to what was written.
        // Its bound: the status line, each field's name and value with ": " and CRLF, the
        // framing lines, the date line and the final CRLF; decimals at most 20 digits and a sign.
        var bound = 9 + 21 + 1 + reason.utf8.count + 2 + (16 + 21 + 2) + 24 + 2
        for (name, value) in response.headers { bound &+= name.utf8.count &+ value.utf8.count &+ 4 }
        if let date { bound &+= 6 &+ date.utf8.count &+ 2 }
        buffer.reserveCapacity(buffer.count &+ bound &+ (headOnly || bodyForbidden ? 0 : response.body.count))
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: bound))
        let written = buffer.withUnsafeMutableBufferPointer { out -> Int in
            var head = HeadWriter(out.baseAddress! + start)
            head.put("HTTP/1.1 ")
            head.putDecimal(status)
            head.put(" ")
            ASCII.withBytes(reason) { head.put($0) }
            head.put("\r\n")

            // A 101 switches protocols: its `Connection: Upgrade` is the caller's, and no
            // `Connection: close` may follow it.
            let switching = status == 101
            for (name, value) in response.headers {
                ASCII.withBytes(name) { name in
                    ASCII.withBytes(value) { value in
                        guard isSafe(name: name, value: value),
                              !isFramingHeader(name) || (switching && ASCII.equalsLowercased(name, 0..<name.count, "connection"))
                        else { return }
                        head.put(name)
                        head.put(": ")
                        head.put(value)
                        head.put("\r\n")
                    }
                }
            }
            if !bodyForbidden {
                head.put("Content-Length: ")
                head.putDecimal(response.body.count)
                head.put("\r\n")
            }
            if switching {
                // Connection header came from the caller.
            } else if !keepAlive {
                head.put("Connection: close\r\n")
            } else if requestVersion == .http1_0 {
                head.put("Connection: keep-alive\r\n")
            }
            if let date {
                ASCII.withBytes(date) { date in
                    guard isSafe(value: date) else { return }
                    head.put("Date: ")
                    head.put(date)
                    head.put("\r\n")
                }
            }
            head.put("\r\n")
            return head.count
        }
        precondition(written <= bound, "response head longer than its bound")
        buffer.removeLast(bound &- written)
        if !headOnly, !bodyForbidden {
            buffer.append(contentsOf: response.body)
        }
    }

    /// Writes a head's pieces one after another from `base`; the caller made the room.
    private struct HeadWriter {
        let base: UnsafeMutablePointer<UInt8>
        private(set) var count = 0

        init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

        mutating func put(_ s: StaticString) {
            (base + count).update(from: s.utf8Start, count: s.utf8CodeUnitCount)
            count &+= s.utf8CodeUnitCount
        }

        mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
            if let source = bytes.baseAddress { (base + count).update(from: source, count: bytes.count) }
            count &+= bytes.count
        }

        /// `value` in decimal, with a `-` when negative (at most 21 bytes).
        mutating func putDecimal(_ value: Int) {
            guard value != 0 else {
                base[count] = 0x30
                count &+= 1
                return
            }
            if value < 0 {
                base[count] = 0x2D
                count &+= 1
            }
            var digits = 0
            var n = value.magnitude
            while n > 0 {
                digits &+= 1
                n /= 10
            }
            n = value.magnitude
            var i = count &+ digits
            while n > 0 {
                i &-= 1
                base[i] = UInt8(truncatingIfNeeded: 0x30 &+ n % 10)
                n /= 10
            }
            count &+= digits
        }
    }

    /// Standard reason phrase for `status`, or `Unknown` for codes without one.
    public static func reasonPhrase(for status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 421: return "Misdirected Request"
        case 422: return "Unprocessable Content"
        case 426: return "Upgrade Required"
        case 428: return "Precondition Required"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Unknown"
        }
    }

    /// Minimal response for a parse error: its status, `Content-Type: text/plain` and the reason
    /// phrase as body. The parser's detail string is deliberately not sent to the peer.
    /// Write it with `keepAlive: false`: the connection cannot be reused after a parse error.
    public static func errorResponse(for error: HTTPParseError) -> HTTPResponse {
        let status = error.status
        return HTTPResponse(
            status: status,
            headers: ["Content-Type": "text/plain"],
            body: reasonPhrase(for: status) + "\n"
        )
    }

    // MARK: - Helpers

    /// `Content-Length`, `Transfer-Encoding` or `Connection`, in any case (by length first).
    private static func isFramingHeader(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        switch name.count {
        case 14: return ASCII.equalsLowercased(name, 0..<14, "content-length")
        case 17: return ASCII.equalsLowercased(name, 0..<17, "transfer-encoding")
        case 10: return ASCII.equalsLowercased(name, 0..<10, "connection")
        default: return false
        }
    }

    /// A header is emitted only if it cannot break the message framing: its name is a
    /// non-empty token and its value holds no CR, LF or NUL.
    private static func isSafe(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !name.isEmpty else { return false }
        for byte in name where !ASCII.isTChar(byte) { return false }
        return isSafe(value: value)
    }

    private static func isSafe(value: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in value where byte == ASCII.cr || byte == ASCII.lf || byte == 0 { return false }
        return true
    }
}
