/// A response to be serialized by ``HTTPResponseWriter``.
public struct HTTPResponse: Sendable {
    /// Status code, e.g. 200.
    public var status: Int
    /// User headers. `Content-Length`, `Transfer-Encoding` and `Connection` are ignored here:
    /// the writer owns framing so that it can never disagree with the body.
    public var headers: HTTPHeaders
    /// Body bytes.
    public var body: [UInt8]

    /// Creates a response with a byte body.
    public init(status: Int = 200, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// Creates a response whose body is the UTF-8 encoding of `body`.
    public init(status: Int = 200, headers: HTTPHeaders = [:], body: String) {
        self.init(status: status, headers: headers, body: Array(body.utf8))
    }
}
