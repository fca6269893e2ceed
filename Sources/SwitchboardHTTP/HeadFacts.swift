// What the parser learns about a request while its head streams in. Kept as byte ranges
// and flags so that no String is created until the head is known to be complete and valid.

struct FieldRange {
    var name: Range<Int>
    var value: Range<Int>
}

struct HeadFacts {
    var method = 0..<0
    var target = 0..<0
    var path = 0..<0
    var query: Range<Int>? = nil
    var version = HTTPVersion.http1_1

    var fieldCount = 0
    var hostCount = 0
    var contentLength: Int? = nil

    var hasTransferEncoding = false
    var transferCodingCount = 0
    var lastCodingIsChunked = false
    var chunkedNotLast = false
    var hasOtherCoding = false

    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var hasUpgrade = false
    var expectsContinue = false

    /// As ``HTTPRequest/keepAlive``: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive` (and no `close`).
    var keepAlive: Bool {
        switch version {
        case .http1_1: return !connectionClose
        case .http1_0: return connectionKeepAlive && !connectionClose
        }
    }

    /// As ``HTTPRequest/isUpgrade``: `Connection` holds `upgrade` and an `Upgrade` field is present.
    var isUpgrade: Bool { connectionUpgrade && hasUpgrade }

    /// Records what a validated field means for framing and connection handling.
    /// Returns an error for framing fields that are malformed or contradictory.
    mutating func note(_ b: UnsafeBufferPointer<UInt8>, name: Range<Int>, value: Range<Int>) -> HTTPParseError? {
        // Dispatch on length first: almost every field is rejected by one integer compare.
        switch name.count {
        case 4 where ASCII.equalsLowercased(b, name, "host"):
            hostCount &+= 1
            if hostCount > 1 { return .badRequest("duplicate Host") }
        case 14 where ASCII.equalsLowercased(b, name, "content-length"):
            return noteContentLength(b, value)
        case 17 where ASCII.equalsLowercased(b, name, "transfer-encoding"):
            hasTransferEncoding = true
            ASCII.forEachListElement(b, value) { coding in
                // Any coding after `chunked` means chunked is not final: the framing is ambiguous.
                if lastCodingIsChunked { chunkedNotLast = true }
                lastCodingIsChunked = ASCII.equalsLowercased(b, coding, "chunked")
                if !lastCodingIsChunked { hasOtherCoding = true }
                transferCodingCount &+= 1
                return true
            }
        case 10 where ASCII.equalsLowercased(b, name, "connection"):
            ASCII.forEachListElement(b, value) { option in
                if ASCII.equalsLowercased(b, option, "close") { connectionClose = true }
                else if ASCII.equalsLowercased(b, option, "keep-alive") { connectionKeepAlive = true }
                else if ASCII.equalsLowercased(b, option, "upgrade") { connectionUpgrade = true }
                return true
            }
        case 7 where ASCII.equalsLowercased(b, name, "upgrade"):
            hasUpgrade = true
        case 6 where ASCII.equalsLowercased(b, name, "expect"):
            if ASCII.equalsLowercased(b, value, "100-continue") { expectsContinue = true }
        default:
            break
        }
        return nil
    }

    /// Content-Length may repeat (as fields or a list) only with one value, RFC 9112 §6.3;
    /// anything else is the classic request-smuggling ambiguity.
    private mutating func noteContentLength(_ b: UnsafeBufferPointer<UInt8>, _ value: Range<Int>) -> HTTPParseError? {
        var start = value.lowerBound
        var i = value.lowerBound
        while i <= value.upperBound {
            if i == value.upperBound || b[i] == ASCII.comma {
                let element = ASCII.trimOWS(b, start..<i)
                guard !element.isEmpty else { return .badRequest("empty Content-Length") }
                var n = 0
                for index in element {
                    let digit = b[index] &- 0x30
                    guard digit <= 9 else { return .badRequest("invalid Content-Length") }
                    let (times10, o1) = n.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times10.addingReportingOverflow(Int(digit))
                    guard !o1, !o2 else { return .badRequest("Content-Length overflow") }
                    n = sum
                }
                if let previous = contentLength, previous != n {
                    return .badRequest("conflicting Content-Length")
                }
                contentLength = n
                start = i &+ 1
            }
            i &+= 1
        }
        return nil
    }
}
