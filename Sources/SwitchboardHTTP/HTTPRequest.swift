/// One parsed request.
public struct HTTPRequest: Sendable {
    /// Method as received, e.g. `GET`. Case-sensitive per RFC 9110.
    public var method: String
    /// Raw request-target, e.g. `/a/b?x=1`.
    public var url: String
    /// `url` before `?`; for absolute-form targets, the part after the authority (`/` when empty).
    public var path: String
    /// `url` after `?`, without it; empty when there is none.
    public var query: String
    /// Protocol version of the request.
    public var version: HTTPVersion
    /// Header fields in received order.
    public var headers: HTTPHeaders
    /// Decoded body (chunked framing removed).
    public var body: [UInt8]
    /// HTTP/1.1 default keep-alive unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    public var keepAlive: Bool
    /// `Connection` contains `upgrade` and an `Upgrade` header is present.
    public var isUpgrade: Bool

    /// Creates a request, deriving `path`, `query`, `keepAlive` and `isUpgrade` from the other fields.
    public init(method: String, url: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.method = method
        self.url = url
        var target = url
        (path, query) = target.withUTF8 { bytes in
            let (pathRange, queryRange) = RequestTarget.split(bytes, 0..<bytes.count)
            let path = pathRange.isEmpty ? "/" : String(decoding: UnsafeBufferPointer(rebasing: bytes[pathRange]), as: UTF8.self)
            let query = queryRange.map { String(decoding: UnsafeBufferPointer(rebasing: bytes[$0]), as: UTF8.self) } ?? ""
            return (path, query)
        }
        self.version = version
        self.headers = headers
        self.body = body
        let close = headers.containsToken("close", in: "Connection")
        switch version {
        case .http1_1: keepAlive = !close
        case .http1_0: keepAlive = !close && headers.containsToken("keep-alive", in: "Connection")
        }
        isUpgrade = headers.containsToken("upgrade", in: "Connection") && headers.contains(name: "Upgrade")
    }

    // The parser already knows every derived field from the bytes; this skips recomputing them.
    init(
        method: String, url: String, path: String, query: String, version: HTTPVersion,
        headers: HTTPHeaders, keepAlive: Bool, isUpgrade: Bool
    ) {
        self.method = method
        self.url = url
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = []
        self.keepAlive = keepAlive
        self.isUpgrade = isUpgrade
    }
}
