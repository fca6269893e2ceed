#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Incremental, strict HTTP/1.1 request parser (RFC 9112).
///
/// Feed any split of the byte stream, down to one byte at a time. With pipelining, ``parse(_:)``
/// stops right after the end of one complete request and reports how many bytes it consumed;
/// call it again with the rest.
///
/// Anything ambiguous about message framing (conflicting `Content-Length`, `Transfer-Encoding`
/// together with `Content-Length`, bare LF, obs-fold, …) is rejected rather than repaired,
/// because a proxy in front of us might repair it differently (request smuggling).
///
/// Memory held per parser is bounded by `max(maxHeaderBytes, maxChunkLineBytes + 2) + maxBodyBytes`
/// (see ``HTTPLimits``): limits are checked before input is buffered, not after.
///
/// Streaming: ``parseEvents(_:)`` reports a request's head before its body; after
/// ``streamBody()`` the body comes out in parts (ranges of the caller's buffer) and the parser
/// buffers none of it, so it holds at most the head. Framing, limits and errors are the same
/// on both paths (`maxBodyBytes` counts the parts handed out).
public struct HTTPRequestParser: Sendable {
    enum State: Sendable, Equatable {
        /// Before or inside the request line (leading empty lines are skipped here).
        case requestLine
        case headers
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        case trailers
        /// A streamed body was handed out to its last byte: the next call reports `.bodyEnd`,
        /// even with no input (the bytes that complete a body may be the last of a read).
        case bodyEnd
        /// Terminal: framing is lost after an error, so the connection cannot be reused.
        case poisoned(HTTPParseError)
    }

    /// RFC 9112 §2.2 lets servers skip some empty lines before a request; bound it.
    static let maxLeadingEmptyLines = 8
    /// Larger head buffers are released between requests so idle keep-alive connections stay small.
    static let retainedBufferCapacity = 4096
    /// Typical browser and API-client heads fit in this.
    static let initialBufferCapacity = 1024
    /// Field ranges reserved at the first request: a WebSocket upgrade has 5 to ~12 fields, and
    /// growing from empty reallocated the list 4 times for 5 (kept across keep-alive requests).
    static let initialFieldCapacity = 8
    /// Reserve at most this much for a declared body up front: a declared length costs the peer nothing.
    static let maxBodyReservation = 64 * 1024

    private let limits: HTTPLimits
    private(set) var state: State = .requestLine
    /// The head received so far; after the head, the current chunk-size line or the trailers.
    private var buffer: [UInt8] = []
    /// Start in `buffer` of the line being received.
    private var lineStart = 0
    private var leadingEmptyLines = 0
    private var facts = HeadFacts()
    /// The current head's field ranges are `fields[..<facts.fieldCount]`. Entries past that
    /// are left from earlier heads on the connection and overwritten in turn: emptying the
    /// list per request cost a `replaceSubrange` (~70 instructions); the memory is the same
    /// as the capacity it kept. At most `maxHeaderCount` entries.
    private var fields: [FieldRange] = []
    /// Size of the completed head; trailers are charged against what remains of maxHeaderBytes.
    private var headBytes = 0
    private var pending: HTTPRequest?
    private var body: [UInt8] = []
    private var continueDue = false
    /// Body bytes of the current request so far (buffered or handed out), for `maxBodyBytes`.
    private var receivedBodyBytes = 0
    /// The current request's body goes to the caller in parts (``streamBody()``).
    private var streaming = false
    /// The call in progress is `parseEvents` (heads are reported before bodies).
    private var reportsHeads = false

    /// Creates a parser enforcing `limits`.
    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// True while part of a request has been received but it is not complete. Lets the caller tell
    /// an idle keep-alive connection (close silently) from a slow request (answer 408).
    public var hasPartialRequest: Bool {
        switch state {
        case .requestLine: return !buffer.isEmpty
        case .poisoned: return false
        default: return true
        }
    }

    /// True once the head of the current request is complete, so a header timeout no longer applies.
    public var isReceivingBody: Bool {
        switch state {
        case .body, .chunkSize, .chunkData, .chunkDataCR, .chunkDataLF, .trailers, .bodyEnd: return true
        case .requestLine, .headers, .poisoned: return false
        }
    }

    /// True when the next ``parseEvents(_:)`` call has an event to report even with no input
    /// (`.bodyEnd` of a streamed body, or `.expectContinue` after a `.head`): call it again
    /// before waiting for more bytes.
    public var hasEventPending: Bool {
        if case .bodyEnd = state { return true }
        return continueDue && isReceivingBody
    }

    /// After a `.head` from ``parseEvents(_:)``: hand the body out in parts (`.bodyPart`,
    /// then `.bodyEnd`) instead of buffering it into a `.request`.
    public mutating func streamBody() {
        precondition(isReceivingBody && pending != nil && receivedBodyBytes == 0 && !streaming,
                     "streamBody() is only valid right after .head")
        streaming = true
    }

    /// Bytes currently buffered for the request in progress (for tests and accounting).
    var bufferedByteCount: Int { buffer.count + body.count }

    /// Parses as much of `bytes` as belongs to the current request.
    ///
    /// - Returns: how many bytes were consumed and what happened. After `.request`, unconsumed
    ///   bytes belong to the next request. After `.error`, the parser stays poisoned.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> (consumed: Int, result: HTTPParseResult) {
        reportsHeads = false
        let (consumed, step) = step(bytes, bare: nil)
        guard case .event(let event) = consume step else { preconditionFailure("a bare request without bare routes") }
        switch consume event {
        case .needMore: return (consumed, .needMore)
        case .expectContinue: return (consumed, .expectContinue)
        case .request(let request): return (consumed, .request(request))
        case .error(let error): return (consumed, .error(error))
        case .head, .bodyPart, .bodyEnd:
            // Heads are reported by `parseEvents` only, and only it can start streaming.
            preconditionFailure("parse(_:) used on a request that parseEvents(_:) is streaming")
        }
    }

    /// Parses as much of `bytes` as belongs to the current request, reporting the head of a
    /// request with a body before the body (see ``HTTPParseEvent``). Call it again while
    /// ``hasEventPending`` is true, even with no bytes left.
    public mutating func parseEvents(_ bytes: UnsafeRawBufferPointer) -> (consumed: Int, event: HTTPParseEvent) {
        reportsHeads = true
        let (consumed, step) = step(bytes, bare: nil)
        guard case .event(let event) = consume step else { preconditionFailure("a bare request without bare routes") }
        return (consumed, event)
    }

    /// ``parseEvents(_:)``, except that a request that is bare for `routes` (see
    /// ``HTTPBareRoutes``) is reported as `.bare`, without its Strings and header list, in
    /// place of `.request`. Its head is validated as any other; the parser is then ready for
    /// the next request.
    package mutating func parseEvents(_ bytes: UnsafeRawBufferPointer, bare routes: HTTPBareRoutes) -> (consumed: Int, event: HTTPDriverEvent) {
        reportsHeads = true
        return step(bytes, bare: routes)
    }

    private mutating func step(_ bytes: UnsafeRawBufferPointer, bare routes: HTTPBareRoutes?) -> (consumed: Int, event: HTTPDriverEvent) {
        if case .poisoned(let error) = state { return (0, .event(.error(error))) }
        if case .bodyEnd = state {
            finish()
            return (0, .event(.bodyEnd))
        }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return needMore(0) }
        let input = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        var offset = 0
        // A head that begins in this call is read in place: its bytes so far are
        // `input[window! ..< offset]` and `buffer` stays empty. They are copied into `buffer`
        // (`keep`) only when the call ends before the head does; a head that arrived whole is
        // never copied (issue 16, HTTP row). Line ranges and the facts' ranges are offsets in
        // the head either way.
        var window: Int? = nil
        while offset < input.count {
            switch state {
            case .poisoned(let error):
                return (offset, .event(.error(error)))

            case .requestLine:
                if fields.capacity == 0 {
                    fields.reserveCapacity(max(0, min(limits.maxHeaderCount, Self.initialFieldCapacity)))
                }
                if window == nil && buffer.isEmpty { window = offset }
                // A request line starts with its method (a token) or is one of the tolerated
                // empty lines: any other first byte (a flood of NULs, TLS on a plain port) is
                // refused at once with 400 instead of being buffered until the 414 limit.
                if headCount(window, offset) == lineStart {
                    let first = input[offset]
                    if !ASCII.isTChar(first) && first != ASCII.cr && first != ASCII.lf {
                        return fail(.badRequest("request line starts with a non-token byte"), offset)
                    }
                }
                switch takeLine(input, &offset, window: window, maxContent: limits.maxRequestLineBytes, tooLong: .uriTooLong, maxBuffer: limits.maxHeaderBytes) {
                case .needMore:
                    keep(input, window, offset)
                    return needMore(offset)
                case .failure(let error): return fail(error, offset)
                case .line(let line):
                    if line.isEmpty {
                        leadingEmptyLines &+= 1
                        if leadingEmptyLines > Self.maxLeadingEmptyLines { return fail(.badRequest("too many empty lines"), offset) }
                        if window != nil {
                            window = offset
                        } else {
                            buffer.removeAll(keepingCapacity: true)
                        }
                        lineStart = 0
                        continue
                    }
                    if let error = withHead(input, window, offset, { $0.requestLine($1, line) }) { return fail(error, offset) }
                    state = .headers
                }

            case .headers:
                switch takeLine(input, &offset, window: window, maxContent: .max, tooLong: .headersTooLarge, maxBuffer: limits.maxHeaderBytes) {
                case .needMore:
                    keep(input, window, offset)
                    return needMore(offset)
                case .failure(let error): return fail(error, offset)
                case .line(let line):
                    if !line.isEmpty {
                        if let error = withHead(input, window, offset, { $0.field($1, line) }) { return fail(error, offset) }
                        continue
                    }
                    let outcome = withHead(input, window, offset) { $0.headComplete($1, bare: routes) }
                    if case .failure(let error) = outcome { return fail(error, offset) }
                    // The head is taken: its bytes are needed no more.
                    headBytes = headCount(window, offset)
                    if window != nil {
                        window = nil
                    } else {
                        buffer.removeAll(keepingCapacity: true)
                    }
                    lineStart = 0
                    if case .bare(let bare) = outcome {
                        resetForNextRequest()
                        return (offset, .bare(bare))
                    }
                    if case .requestLine = state, let request = finish() { return (offset, .event(.request(request))) }
                    if reportsHeads, let head = pending { return (offset, .event(.head(head))) }
                }

            case .body(let remaining):
                let n = min(remaining, input.count &- offset)
                let start = offset
                offset &+= n
                receivedBodyBytes &+= n
                if streaming {
                    state = n == remaining ? .bodyEnd : .body(remaining: remaining &- n)
                    return (offset, .event(.bodyPart(start..<offset)))
                }
                body.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<offset]))
                guard n == remaining else {
                    state = .body(remaining: remaining &- n)
                    continue
                }
                if let request = finish() { return (offset, .event(.request(request))) }

            case .chunkSize:
                switch takeLine(input, &offset, window: nil, maxContent: limits.maxChunkLineBytes, tooLong: .badRequest("chunk line too long"), maxBuffer: nil) {
                case .needMore: return needMore(offset)
                case .failure(let error): return fail(error, offset)
                case .line(let line):
                    if let error = chunkSizeLine(line) { return fail(error, offset) }
                }

            case .chunkData(let remaining):
                let n = min(remaining, input.count &- offset)
                let start = offset
                offset &+= n
                receivedBodyBytes &+= n
                state = n == remaining ? .chunkDataCR : .chunkData(remaining: remaining &- n)
                if streaming { return (offset, .event(.bodyPart(start..<offset))) }
                body.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<offset]))

            case .chunkDataCR:
                guard input[offset] == ASCII.cr else { return fail(.badRequest("chunk data not followed by CRLF"), offset) }
                offset &+= 1
                state = .chunkDataLF

            case .chunkDataLF:
                guard input[offset] == ASCII.lf else { return fail(.badRequest("chunk data not followed by CRLF"), offset) }
                offset &+= 1
                state = .chunkSize

            case .trailers:
                switch takeLine(input, &offset, window: nil, maxContent: .max, tooLong: .headersTooLarge, maxBuffer: limits.maxHeaderBytes &- headBytes) {
                case .needMore: return needMore(offset)
                case .failure(let error): return fail(error, offset)
                case .line(let line):
                    if !line.isEmpty {
                        if let error = trailerField(line) { return fail(error, offset) }
                        continue
                    }
                    if streaming {
                        finish()
                        return (offset, .event(.bodyEnd))
                    }
                    if let request = finish() { return (offset, .event(.request(request))) }
                }

            case .bodyEnd:
                // Reported at the top of `step` before any input is taken.
                preconditionFailure("unreachable: .bodyEnd is reported before reading input")
            }
        }
        // (A head line that ended with the input.)
        keep(input, window, offset)
        return needMore(offset)
    }

    // MARK: - The head in place or buffered

    /// Bytes of the head received so far (in place or buffered).
    @inline(__always)
    private func headCount(_ window: Int?, _ offset: Int) -> Int {
        if let window { return offset &- window }
        return buffer.count
    }

    /// Calls `body` with the head received so far: in place (`input[window..<offset]`) or
    /// the buffer's bytes. Either way index 0 is the head's first byte.
    @inline(__always)
    private mutating func withHead<R>(_ input: UnsafeBufferPointer<UInt8>, _ window: Int?, _ offset: Int,
                                      _ body: (inout Self, UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let window { return body(&self, UnsafeBufferPointer(rebasing: input[window..<offset])) }
        let bytes = buffer // shares storage; lets `body` mutate self without overlapping access
        return bytes.withUnsafeBufferPointer { body(&self, $0) }
    }

    /// The call ends inside a head read in place: its bytes so far go to `buffer`, where the
    /// next call goes on with it (as if every line had been buffered).
    private mutating func keep(_ input: UnsafeBufferPointer<UInt8>, _ window: Int?, _ offset: Int) {
        guard let window else { return }
        assert(buffer.isEmpty, "a head read in place while another was buffered")
        if buffer.capacity == 0 {
            // One allocation covers typical heads instead of several doublings.
            buffer.reserveCapacity(min(limits.maxHeaderBytes, Self.initialBufferCapacity))
        }
        buffer.append(contentsOf: UnsafeBufferPointer(rebasing: input[window..<offset]))
    }

    // MARK: - Results

    private mutating func needMore(_ consumed: Int) -> (consumed: Int, event: HTTPDriverEvent) {
        if continueDue, isReceivingBody {
            continueDue = false
            return (consumed, .event(.expectContinue))
        }
        return (consumed, .event(.needMore))
    }

    private mutating func fail(_ error: HTTPParseError, _ consumed: Int) -> (consumed: Int, event: HTTPDriverEvent) {
        state = .poisoned(error)
        // Nothing buffered can be used any more; give the memory back now.
        buffer = []
        body = []
        fields = []
        pending = nil
        streaming = false
        return (consumed, .event(.error(error)))
    }

    /// Hands out the completed request and resets for the next one on the same connection.
    @discardableResult
    private mutating func finish() -> HTTPRequest? {
        // Moved out, not copied: a copy would retain each of its Strings and arrays once more.
        var taken: HTTPRequest? = nil
        swap(&taken, &pending)
        guard var request = consume taken else {
            state = .poisoned(.badRequest("internal: no pending request"))
            return nil
        }
        swap(&request.body, &body)
        resetForNextRequest()
        return request
    }

    /// Resets for the next request on the same connection (the completed one handed out).
    private mutating func resetForNextRequest() {
        state = .requestLine
        if buffer.capacity > Self.retainedBufferCapacity {
            buffer = []
        } else if !buffer.isEmpty {
            // (Empty after a head without body: `headComplete` emptied it; removing nothing
            // still costs a uniqueness check and a replaceSubrange.)
            buffer.removeAll(keepingCapacity: true)
        }
        lineStart = 0
        leadingEmptyLines = 0
        headBytes = 0
        facts = HeadFacts()
        continueDue = false
        receivedBodyBytes = 0
        streaming = false
    }

    // MARK: - Lines

    private enum LineResult {
        case line(Range<Int>)
        case needMore
        case failure(HTTPParseError)
    }

    /// Moves input up to and including the next LF into `buffer` (or, for a head read in
    /// place from `window`, past it), enforcing limits before buffering anything. Returns the
    /// completed line's range in the head or `buffer` without its CRLF.
    ///
    /// - Parameters:
    ///   - maxContent: longest line content allowed (CRLF excluded); longer fails with `tooLong`.
    ///   - maxBuffer: most bytes `buffer` (or the head in place) may hold; more fails with `headersTooLarge`.
    private mutating func takeLine(
        _ input: UnsafeBufferPointer<UInt8>, _ offset: inout Int, window: Int?,
        maxContent: Int, tooLong: HTTPParseError, maxBuffer: Int?
    ) -> LineResult {
        let start = offset
        let available = input.count &- start
        let base = UnsafeRawPointer(input.baseAddress!)
        let lfPointer = memchr(base + start, Int32(ASCII.lf), available)
        let complete = lfPointer != nil
        var end = input.count
        if let lfPointer {
            end = base.distance(to: UnsafeRawPointer(lfPointer)) &+ 1
        }
        let held = headCount(window, start)
        let newCount = held &+ (end &- start)
        let lineLength = newCount &- lineStart

        // The byte before the LF (or the last byte, for a partial line) may be the CR of the CRLF.
        var content = lineLength
        if complete {
            content &-= 1
            var beforeLF: UInt8 = 0
            if end &- start >= 2 {
                beforeLF = input[end &- 2]
            } else if held > lineStart {
                // In place, the head's last byte is the one before this input.
                beforeLF = window != nil ? input[start &- 1] : buffer[buffer.count &- 1]
            }
            if beforeLF == ASCII.cr { content &-= 1 }
        } else if input[end &- 1] == ASCII.cr {
            content &-= 1
        }
        if content > maxContent { return .failure(tooLong) }
        if let maxBuffer, newCount > maxBuffer { return .failure(.headersTooLarge) }

        if window == nil { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<end])) }
        offset = end
        guard complete else { return .needMore }
        guard content == lineLength &- 2 else { return .failure(.badRequest("bare LF")) }
        let line = lineStart..<(lineStart &+ content)
        lineStart = newCount
        return .line(line)
    }

    private mutating func requestLine(_ b: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> HTTPParseError? {
        switch LineSyntax.requestLine(b, line) {
        case .failure(let error):
            return error
        case .success(let requestLine):
            facts.method = requestLine.method
            facts.target = requestLine.target
            facts.path = requestLine.path
            facts.query = requestLine.query
            facts.version = requestLine.version
            return nil
        }
    }

    private mutating func field(_ b: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> HTTPParseError? {
        facts.fieldCount &+= 1
        if facts.fieldCount > limits.maxHeaderCount { return .headersTooLarge }
        switch LineSyntax.field(b, line) {
        case .failure(let error):
            return error
        case .success(let field):
            let index = facts.fieldCount &- 1
            if index < fields.count {
                fields[index] = field
            } else {
                assert(index == fields.count, "a field range skipped")
                fields.append(field)
            }
            return facts.note(b, name: field.name, value: field.value)
        }
    }

    private mutating func trailerField(_ line: Range<Int>) -> HTTPParseError? {
        facts.fieldCount &+= 1
        if facts.fieldCount > limits.maxHeaderCount { return .headersTooLarge }
        let bytes = buffer
        switch bytes.withUnsafeBufferPointer({ LineSyntax.field($0, line) }) {
        case .failure(let error): return error
        case .success: return nil // validated, then discarded: trailers must not alter the request
        }
    }

    private mutating func chunkSizeLine(_ line: Range<Int>) -> HTTPParseError? {
        let bytes = buffer
        let parsed = bytes.withUnsafeBufferPointer { LineSyntax.chunkSize($0, line) }
        buffer.removeAll(keepingCapacity: true)
        lineStart = 0
        switch parsed {
        case .failure(let error):
            return error
        case .success(let size):
            if size > UInt64(limits.maxBodyBytes &- receivedBodyBytes) { return .bodyTooLarge }
            state = size == 0 ? .trailers : .chunkData(remaining: Int(size))
            return nil
        }
    }

    // MARK: - Head

    /// What `headComplete` found.
    private enum HeadOutcome {
        case failure(HTTPParseError)
        /// The request is built (`pending`).
        case built
        /// A bare request for the routes given (nothing is built; `pending` stays nil).
        case bare(HTTPBareRequest)
    }

    /// Validates the framing of the complete head `b`, builds the request (or, bare for
    /// `routes`, only its ``HTTPBareRequest``) and picks the body state. The caller then lets
    /// go of the head's bytes.
    private mutating func headComplete(_ b: UnsafeBufferPointer<UInt8>, bare routes: HTTPBareRoutes?) -> HeadOutcome {
        if facts.version == .http1_1, facts.hostCount == 0 { return .failure(.badRequest("missing Host")) }
        var chunked = false
        if facts.hasTransferEncoding {
            if facts.version == .http1_0 { return .failure(.badRequest("Transfer-Encoding in HTTP/1.0")) }
            if facts.contentLength != nil { return .failure(.badRequest("Transfer-Encoding with Content-Length")) }
            if facts.transferCodingCount == 0 || facts.chunkedNotLast { return .failure(.badRequest("chunked is not the final coding")) }
            if !facts.lastCodingIsChunked || facts.hasOtherCoding { return .failure(.notImplemented("transfer coding")) }
            chunked = true
        }
        let length = facts.contentLength ?? 0
        if length > limits.maxBodyBytes { return .failure(.bodyTooLarge) }

        // Without a body the request is complete here: a bare one needs nothing built.
        let bare = !chunked && length == 0 ? routes.flatMap { bareRequest(b, $0) } : nil
        if bare == nil { pending = buildRequest(b) }
        if chunked {
            state = .chunkSize
        } else if length > 0 {
            body.reserveCapacity(min(length, Self.maxBodyReservation))
            state = .body(remaining: length)
        } else {
            state = .requestLine
        }
        continueDue = facts.expectsContinue && facts.version == .http1_1 && state != .requestLine
        if let bare { return .bare(bare) }
        return .built
    }

    /// The complete head as a bare request for `routes` (see ``HTTPBareRoutes``), or nil.
    /// The caller has checked that it has no body. (Inlined: a call copied the whole parser
    /// for it, ~70 instructions.)
    @inline(__always)
    private func bareRequest(_ b: UnsafeBufferPointer<UInt8>, _ routes: HTTPBareRoutes) -> HTTPBareRequest? {
        if facts.isUpgrade { return nil }
        let headOnly: Bool
        if ASCII.equalsExactly(b, facts.method, "GET") {
            headOnly = false
        } else if ASCII.equalsExactly(b, facts.method, "HEAD") {
            headOnly = true
        } else {
            return nil
        }
        guard let route = routes.route(b, path: facts.path) else { return nil }
        return HTTPBareRequest(route: route, headOnly: headOnly, version: facts.version, keepAlive: facts.keepAlive)
    }

    /// The common methods as literals (no decoding per request); nil for the others.
    private static func method(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
        if ASCII.equalsExactly(b, range, "GET") { return "GET" }
        if ASCII.equalsExactly(b, range, "POST") { return "POST" }
        if ASCII.equalsExactly(b, range, "HEAD") { return "HEAD" }
        return nil
    }

    private func buildRequest(_ b: UnsafeBufferPointer<UInt8>) -> HTTPRequest {
        func string(_ r: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self)
        }
        var headers = HTTPHeaders(minimumCapacity: facts.fieldCount)
        for index in 0..<facts.fieldCount {
            let field = fields[index]
            // `Host` is in every HTTP/1.1 request: a literal costs no decoding. The other
            // common names are literals too (`CommonFieldNames`); this shape, `Host` checked
            // here, keeps `GET /health` at its count (a `??` here cost a retain per request).
            let name = ASCII.equalsExactly(b, field.name, "Host") ? "Host" : CommonFieldNames.name(b, field.name)
            headers.add(name: name, value: string(field.value))
        }
        let url = string(facts.target)
        return HTTPRequest(
            method: Self.method(b, facts.method) ?? string(facts.method),
            url: url,
            // Origin-form without a query (most requests): the path is the whole target.
            path: facts.path.isEmpty ? "/" : facts.path == facts.target ? url : string(facts.path),
            query: facts.query.map(string) ?? "",
            version: facts.version,
            headers: headers,
            keepAlive: facts.keepAlive,
            isUpgrade: facts.isUpgrade
        )
    }
}
