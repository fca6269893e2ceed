/// A handler's answer to an HTTP request.
public enum HTTPReply: Sendable {
    /// The response, written now.
    case response(WorkerResponse)
    /// Not this handler's request: 404, or the next route of a router.
    case notHandled
    /// The response comes later, through this slot (from `context.deferResponse()`, for the
    /// request being handled). Responses still leave in request order.
    case deferred(ResponseSlot)
}
