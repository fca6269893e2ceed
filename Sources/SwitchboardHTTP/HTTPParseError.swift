/// Why a request was rejected. Once the parser reports one, the connection must be closed:
/// after a framing error the position of the next request in the stream is unknowable.
public enum HTTPParseError: Error, Sendable, Equatable {
    /// Malformed syntax or ambiguous framing (400). The string is a short reason for logs, never sent to the peer.
    case badRequest(String)
    /// Request line longer than ``HTTPLimits/maxRequestLineBytes`` (414).
    case uriTooLong
    /// Head larger than ``HTTPLimits/maxHeaderBytes`` or more than ``HTTPLimits/maxHeaderCount`` fields (431).
    case headersTooLarge
    /// Body larger than ``HTTPLimits/maxBodyBytes`` (413).
    case bodyTooLarge
    /// Well-formed `HTTP/d.d` version other than 1.0 and 1.1 (505).
    case versionNotSupported
    /// A feature the server does not implement, e.g. a transfer coding other than `chunked` (501).
    case notImplemented(String)

    /// The HTTP status code to answer with.
    public var status: Int {
        switch self {
        case .badRequest: return 400
        case .uriTooLong: return 414
        case .headersTooLarge: return 431
        case .bodyTooLarge: return 413
        case .versionNotSupported: return 505
        case .notImplemented: return 501
        }
    }
}
