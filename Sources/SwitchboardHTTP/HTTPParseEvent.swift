/// What one call to ``HTTPRequestParser/parseEvents(_:)`` produced: the events of
/// ``HTTPParseResult`` plus a request's head before its body, and the body in parts when the
/// caller chose ``HTTPRequestParser/streamBody()``.
public enum HTTPParseEvent: Sendable {
    /// Every byte was consumed and buffered; feed more.
    case needMore
    /// As ``HTTPParseResult/expectContinue``: the caller may write `100 Continue`.
    case expectContinue
    /// The head of a request that has a body (its `body` is empty). The body follows: buffered
    /// into a later ``request(_:)`` by default, or as ``bodyPart(_:)``s and ``bodyEnd`` after
    /// ``HTTPRequestParser/streamBody()``. Requests without a body come as ``request(_:)`` only.
    case head(HTTPRequest)
    /// Decoded body bytes of a streamed body (chunked framing removed): this range of the
    /// buffer given to the call, valid only during it. The consumed count ends the range.
    case bodyPart(Range<Int>)
    /// The streamed body is complete (trailers validated and dropped, as on the buffered path).
    /// Bytes after it belong to the next request.
    case bodyEnd
    /// One complete request (with its whole body). Bytes after it were not consumed.
    case request(HTTPRequest)
    /// The request is invalid; the parser is poisoned (see ``HTTPParseResult/error(_:)``).
    case error(HTTPParseError)
}
