import HTTPTypes
import SwitchboardHTTP

/// The parser's request and the writer's response (SwitchboardHTTP), internal to the broker:
/// handlers see ``WorkerRequest`` / ``WorkerResponse`` (swift-http-types).
typealias ParsedRequest = SwitchboardHTTP.HTTPRequest
typealias WireResponse = SwitchboardHTTP.HTTPResponse

extension WorkerRequest {
    /// The handler's view of a parsed request. The parser validated method and field names
    /// as tokens, so the swift-http-types initializers cannot refuse them.
    /// Borrowed: an initializer takes its arguments owned, so the driver, which still needs
    /// the request, had to copy it (a retain of every String and array in it) for this call.
    init(parsed request: borrowing ParsedRequest) {
        var fields = HTTPFields()
        fields.reserveCapacity(request.headers.count)
        for (name, value) in request.headers {
            guard let fieldName = Self.commonName(name) ?? HTTPField.Name(name) else {
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

    /// `Host` made once: swift-http-types marks its `.host` unavailable ("use authority").
    private static let hostName = HTTPField.Name("Host")!

    /// swift-http-types' own name for a field name spelled exactly as its registered spelling
    /// (the parser hands these out as literals: see `CommonFieldNames`), without the
    /// validation and lowercasing of `HTTPField.Name(_:)`; nil for any other spelling.
    private static func commonName(_ name: String) -> HTTPField.Name? {
        switch name.utf8.count {
        case 4: return name == "Host" ? hostName : nil
        case 6: return name == "Accept" ? .accept : name == "Origin" ? .origin : name == "Cookie" ? .cookie : nil
        case 7: return name == "Upgrade" ? .upgrade : nil
        case 10: return name == "Connection" ? .connection : name == "User-Agent" ? .userAgent : nil
        case 12: return name == "Content-Type" ? .contentType : nil
        case 13: return name == "Cache-Control" ? .cacheControl : name == "Authorization" ? .authorization : nil
        case 14: return name == "Content-Length" ? .contentLength : nil
        case 15: return name == "Accept-Encoding" ? .acceptEncoding : name == "Accept-Language" ? .acceptLanguage : nil
        case 17: return name == "Sec-WebSocket-Key" ? .secWebSocketKey : nil
        case 21: return name == "Sec-WebSocket-Version" ? .secWebSocketVersion : nil
        case 22: return name == "Sec-WebSocket-Protocol" ? .secWebSocketProtocol : nil
        case 24: return name == "Sec-WebSocket-Extensions" ? .secWebSocketExtensions : nil
        default: return nil
        }
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
