import HTTPTypes

/// A handler's HTTP response: swift-http-types' status and fields, and a body.
///
/// `Content-Length`, `Transfer-Encoding` and `Connection` fields are ignored: the broker owns
/// framing so that it can never disagree with the body.
public struct WorkerResponse: Sendable {
    public var status: HTTPResponse.Status
    public var headerFields: HTTPFields
    public var body: [UInt8]

    public init(status: HTTPResponse.Status = .ok, headerFields: HTTPFields = [:], body: [UInt8] = []) {
        self.status = status
        self.headerFields = headerFields
        self.body = body
    }

    /// A response whose body is the UTF-8 encoding of `body`.
    public init(status: HTTPResponse.Status = .ok, headerFields: HTTPFields = [:], body: String) {
        self.init(status: status, headerFields: headerFields, body: Array(body.utf8))
    }

    /// A `text/plain` response.
    public static func text(_ body: String, status: HTTPResponse.Status = .ok) -> WorkerResponse {
        WorkerResponse(status: status, headerFields: [.contentType: "text/plain"], body: body)
    }
}
