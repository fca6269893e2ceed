import Testing
@testable import SwitchboardHTTP

/// Comparable snapshot of a parsed request (HTTPRequest itself is not Equatable).
struct RequestSummary: Equatable, CustomStringConvertible {
    var method: String
    var url: String
    var path: String
    var query: String
    var version: HTTPVersion
    var headers: HTTPHeaders
    var body: [UInt8]
    var keepAlive: Bool
    var isUpgrade: Bool

    init(_ r: HTTPRequest) {
        method = r.method; url = r.url; path = r.path; query = r.query; version = r.version
        headers = r.headers; body = r.body; keepAlive = r.keepAlive; isUpgrade = r.isUpgrade
    }

    var description: String { "\(method) \(url) \(version) body=\(body.count)" }
}

enum Event: Equatable {
    case request(RequestSummary)
    case expectContinue
    case error(HTTPParseError)

    var request: RequestSummary? {
        if case .request(let r) = self { return r }
        return nil
    }
}

/// Feeds `bytes` in one call-chain (re-calling after each complete request), recording events
/// and the absolute stream offset at which each event was reported.
func feed(_ parser: inout HTTPRequestParser, _ bytes: [UInt8], events: inout [Event], offsets: inout [Int], base: Int = 0) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while true {
            let slice = UnsafeRawBufferPointer(rebasing: raw[offset...])
            let (consumed, result) = parser.parse(slice)
            #expect(consumed >= 0 && consumed <= slice.count)
            offset += consumed
            switch result {
            case .needMore:
                #expect(offset == raw.count, "needMore must consume everything")
                return
            case .expectContinue:
                #expect(offset == raw.count, "expectContinue must consume everything")
                events.append(.expectContinue); offsets.append(base + offset)
                return
            case .request(let r):
                events.append(.request(RequestSummary(r))); offsets.append(base + offset)
                if offset == raw.count { return }
            case .error(let e):
                events.append(.error(e)); offsets.append(base + offset)
                return
            }
        }
    }
}

/// Events from feeding `bytes` whole.
func parseWhole(_ bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) -> [Event] {
    var parser = HTTPRequestParser(limits: limits)
    var events: [Event] = []
    var offsets: [Int] = []
    feed(&parser, bytes, events: &events, offsets: &offsets)
    return events
}

/// Events from feeding `bytes` one byte per call; stops at the first error.
func parseByteByByte(_ bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) -> [Event] {
    var parser = HTTPRequestParser(limits: limits)
    var events: [Event] = []
    var offsets: [Int] = []
    for (i, b) in bytes.enumerated() {
        feed(&parser, [b], events: &events, offsets: &offsets, base: i)
        if case .error = events.last { break }
    }
    return events
}

func withoutContinue(_ events: [Event]) -> [Event] {
    events.filter { $0 != .expectContinue }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The single request produced by feeding `raw` whole, checked to be identical byte by byte.
func single(_ raw: String, limits: HTTPLimits = HTTPLimits()) -> RequestSummary? {
    let whole = parseWhole(bytes(raw), limits: limits)
    let split = parseByteByByte(bytes(raw), limits: limits)
    #expect(withoutContinue(whole) == withoutContinue(split))
    #expect(whole.count == 1, "expected one event, got \(whole)")
    return whole.first?.request
}

/// The error produced by `raw`, whole and byte by byte (they must agree).
func errorOf(_ raw: [UInt8], limits: HTTPLimits = HTTPLimits()) -> (whole: HTTPParseError?, split: HTTPParseError?) {
    func firstError(_ events: [Event]) -> HTTPParseError? {
        for e in events { if case .error(let x) = e { return x } }
        return nil
    }
    return (firstError(parseWhole(raw, limits: limits)), firstError(parseByteByByte(raw, limits: limits)))
}

/// Compares errors by status and case, ignoring the free-text log reason of `.badRequest`.
func sameKind(_ a: HTTPParseError?, _ b: HTTPParseError) -> Bool {
    guard let a else { return false }
    switch (a, b) {
    case (.badRequest, .badRequest), (.notImplemented, .notImplemented): return true
    default: return a == b
    }
}

/// What the streaming path (`parseEvents` with `streamBody()` after every head) reports, with
/// body parts concatenated per request: `head(summary)`, `body(bytes)` at `.bodyEnd`,
/// `request(summary)` for requests without a body, `error` last.
enum StreamEvent: Equatable {
    case head(RequestSummary)
    case body([UInt8])
    case request(RequestSummary)
    case error(HTTPParseError)
}

/// Feeds `bytes` `step` bytes per call to `parseEvents`, streaming every body.
func streamEvents(_ bytes: [UInt8], step: Int, limits: HTTPLimits = HTTPLimits()) -> [StreamEvent] {
    var parser = HTTPRequestParser(limits: limits)
    var events: [StreamEvent] = []
    var body: [UInt8] = []
    var start = 0
    while start < bytes.count || parser.hasEventPending {
        let end = min(bytes.count, start + max(step, 1))
        let piece = Array(bytes[start..<end])
        var offset = 0
        var stop = false
        piece.withUnsafeBytes { raw in
            repeat {
                let slice = UnsafeRawBufferPointer(rebasing: raw[offset...])
                let (consumed, event) = parser.parseEvents(slice)
                switch event {
                case .needMore, .expectContinue: break
                case .head(let h):
                    events.append(.head(RequestSummary(h)))
                    parser.streamBody()
                case .bodyPart(let range):
                    #expect(range.upperBound == consumed)
                    body += slice[range]
                case .bodyEnd:
                    events.append(.body(body)); body = []
                case .request(let r):
                    events.append(.request(RequestSummary(r)))
                case .error(let e):
                    events.append(.error(e)); stop = true
                }
                offset += consumed
            } while !stop && (offset < raw.count || parser.hasEventPending)
        }
        if stop { break }
        start = end
    }
    return events
}
