import HTTPTypes

/// An HTTP request as a handler sees it: swift-http-types' method and fields, the target
/// split into path and query, and the decoded body (chunked framing removed).
public struct WorkerRequest: Sendable {
    /// The method, e.g. `.get`.
    public var method: HTTPRequest.Method
    /// The raw request-target, e.g. `/a/b?x=1`.
    public var target: String
    /// `target` before `?` (for absolute-form targets, the part after the authority; `/` when empty).
    public var path: String
    /// `target` after `?`, without it; empty when there is none.
    public var query: String
    /// Header fields in received order.
    public var headerFields: HTTPFields
    /// The body bytes (empty when the body is streamed).
    public var body: [UInt8]
    /// The body in parts as they arrive, when the handler chose ``BodyDelivery/streamed`` for
    /// this request in ``WorkerHandler/bodyDelivery(for:context:)``; nil otherwise.
    public var bodyStream: RequestBodyStream? = nil

    public init(method: HTTPRequest.Method, target: String, path: String? = nil, query: String? = nil,
                headerFields: HTTPFields = [:], body: [UInt8] = []) {
        self.method = method
        self.target = target
        // Searched only when needed: the broker passes both (a Character search is ~1,200
        // instructions for a short target).
        let question = path == nil || query == nil ? target.firstIndex(of: "?") : nil
        self.path = path ?? String(target[..<(question ?? target.endIndex)])
        self.query = query ?? question.map { String(target[target.index(after: $0)...]) } ?? ""
        self.headerFields = headerFields
        self.body = body
    }
}
