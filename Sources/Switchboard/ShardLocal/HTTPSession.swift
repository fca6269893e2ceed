import DequeModule
import SwitchboardHTTP

/// Where an HTTP connection is in reading its requests.
enum HTTPLifecycle: Equatable {
    /// Between requests: nothing partial is buffered, no request timer runs.
    case idle
    /// Part of a request arrived; the request timer runs until it is complete.
    case receiving
    /// No further request will be read (error answered, `Connection: close`, the pending
    /// limit, a response over the send limit, draining, or the connection upgraded). Responses
    /// still owed are written; the last one closes the connection.
    case finished
}

/// A response the connection owes, in request order.
struct PendingResponse {
    /// The request's number on this connection (consecutive along the queue).
    let sequence: UInt64
    let keepAlive: Bool
    let headOnly: Bool
    let version: HTTPVersion
    /// When the broker answers 504 in the handler's place (deferred responses only;
    /// increasing along the queue, because the timeout is one constant).
    let deadlineMilliseconds: Int64
    /// nil while deferred and not answered yet.
    var response: WireResponse?
}

/// An HTTP connection's parser, lifecycle, and the responses it owes. Boxed so the per-slot
/// array stays small and a driver mutates it in place through the slot's enum.
final class HTTPSession {
    var parser: HTTPRequestParser
    var lifecycle = HTTPLifecycle.idle
    /// Responses owed, oldest first. Empty on the fast path: a response ready at once with
    /// nothing owed before it is written directly, never queued.
    var pending = Deque<PendingResponse>()
    /// The sequence the next queued response gets.
    var nextSequence: UInt64 = 0
    /// Entries of `pending` still waiting for their deferred answer.
    var deferredCount = 0

    init(limits: HTTPLimits) { parser = HTTPRequestParser(limits: limits) }
}
