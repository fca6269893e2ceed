import SwitchboardHTTP

/// Where an HTTP connection is in reading its requests.
enum HTTPLifecycle: Equatable {
    /// Between requests: nothing partial is buffered, no request timer runs.
    case idle
    /// Part of a request arrived; the request timer runs until it is complete.
    case receiving
    /// No further request will be read (error answered, `Connection: close`, a response over
    /// the send limit, draining, or the connection upgraded).
    case finished
}

/// An HTTP connection's parser and lifecycle. Boxed so the per-slot array stays small and a
/// driver mutates it in place through the slot's enum.
final class HTTPSession {
    var parser: HTTPRequestParser
    var lifecycle = HTTPLifecycle.idle
    init(limits: HTTPLimits) { parser = HTTPRequestParser(limits: limits) }
}
