import HTTPTypes
import SwitchboardHTTP

/// The parser's request and the writer's response (SwitchboardHTTP), internal to the broker:
/// handlers see ``WorkerRequest`` / ``WorkerResponse`` (swift-http-types).
typealias ParsedRequest = SwitchboardHTTP.HTTPRequest
typealias WireResponse = SwitchboardHTTP.HTTPResponse

extension WorkerRequest {
    /// The handler's view of a parsed request. The parser validated method and field names
    /// as tokens, so the swift-http-types initializers cannot refuse them.
    init(parsed request: ParsedRequest) {
        var fields = HTTPFields()
        fields.reserveCapacity(request.headers.count)
        for (name, value) in request.headers {
            guard let fieldName = HTTPField.Name(name) else {
                assertionFailure("the parser let through an invalid field name")
                continue
            }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        let method = HTTPTypes.HTTPRequest.Method(request.method)
        assert(method != nil, "the parser let through an invalid method")
        self.init(method: method ?? .get, target: request.url, path: request.path, query: request.query,
                  headerFields: fields, body: request.body)
    }
}

extension WorkerResponse {
    /// The writer's form (field names as the handler spelled them).
    var wire: WireResponse {
        var headers = HTTPHeaders()
        for field in headerFields { headers.add(name: field.name.rawName, value: field.value) }
        return WireResponse(status: status.code, headers: headers, body: body)
    }
}

extension WireResponse {
    /// A `text/plain` response the broker makes itself (errors, 404, 503, 504).
    static func plain(_ status: Int, _ body: String) -> WireResponse {
        WireResponse(status: status, headers: ["Content-Type": "text/plain"], body: body)
    }
}
