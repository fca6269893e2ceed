/// A handler's answer to an HTTP request.
public enum HTTPReply: Sendable {
    /// The response, written now.
    case response(WorkerResponse)
    /// Not this handler's request: 404, or the next route of a router.
    case notHandled
}
