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
    /// Cleared when the connection must close after this response (a streamed body cut short).
    var keepAlive: Bool
    let headOnly: Bool
    let version: HTTPVersion
    /// When the broker answers 504 in the handler's place (deferred responses only;
    /// increasing along the queue, because the timeout is one constant).
    let deadlineMilliseconds: Int64
    /// nil while deferred and not answered yet.
    var response: WireResponse?
}

/// A streamed request body in progress on a connection.
struct ActiveBodyStream {
    let stream: RequestBodyStream
    /// The sequence of its deferred response.
    let sequence: UInt64?
    /// The request allows another after it (read once the body is complete).
    let keepAlive: Bool
}

/// An HTTP connection's parser, lifecycle, and the responses it owes. Boxed so the per-slot
/// array stays small and a driver mutates it in place through the slot's enum.
///
/// `parser`, `lifecycle` and `pending` are read on every request and skip the dynamic
/// exclusivity check (~85 instructions each, issue 16 HTTP row): shard thread only, and their
/// mutating accesses (a parse, an append) call out to nothing that could reach the session.
final class HTTPSession {
    @exclusivity(unchecked) var parser: HTTPRequestParser
    @exclusivity(unchecked) var lifecycle = HTTPLifecycle.idle
    /// Responses owed, oldest first. Empty on the fast path: a response ready at once with
    /// nothing owed before it is written directly, never queued.
    @exclusivity(unchecked) var pending = Deque<PendingResponse>()
    /// The sequence the next queued response gets.
    var nextSequence: UInt64 = 0
    /// Entries of `pending` still waiting for their deferred answer.
    var deferredCount = 0
    /// The request whose body is being streamed to its handler (between `.head` and `.bodyEnd`).
    var stream: ActiveBodyStream? = nil
    /// This connection's streamed bytes not yet taken (made with its first streamed body).
    var streamBudget: BodyStreamBudget? = nil
    /// The driver paused reading for the consumers (`streamBudget` at its limit).
    var readPaused = false

    init(limits: HTTPLimits) { parser = HTTPRequestParser(limits: limits) }
}
