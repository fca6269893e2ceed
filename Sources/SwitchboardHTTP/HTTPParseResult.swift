/// What one call to ``HTTPRequestParser/parse(_:)`` produced.
public enum HTTPParseResult: Sendable {
    /// Every byte was consumed and buffered; feed more.
    case needMore
    /// The head of a request carrying `Expect: 100-continue` is complete but its body is not.
    /// The caller may write `HTTP/1.1 100 Continue\r\n\r\n`, then keep feeding.
    /// Reported at most once per request.
    case expectContinue
    /// One complete request. Bytes after it were not consumed.
    case request(HTTPRequest)
    /// The request is invalid. The parser is poisoned: answer with `error.status` and close.
    case error(HTTPParseError)
}
