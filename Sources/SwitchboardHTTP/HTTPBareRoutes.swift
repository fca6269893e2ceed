// Requests a server answers from the request line alone (its built-in routes: health,
// metrics), handed out by the parser without the Strings and the header list of an
// `HTTPRequest` (issue 16, HTTP row: building them and destroying them was ~1,400 user
// instructions and the one malloc of a `GET /health`). Package API: the broker's HTTP driver
// is the only user; the public `parse`/`parseEvents` are unchanged.

/// The paths of the routes a caller answers from the request line alone, in its order of
/// precedence (the first equal path wins, as the caller's own route lookup does).
///
/// A request is *bare* for these routes (``HTTPRequestParser/parseEvents(_:bare:)``) when its
/// method is exactly `GET` or `HEAD`, it has no body (no `Transfer-Encoding`, no or a zero
/// `Content-Length`), it is not an upgrade (``HTTPRequest/isUpgrade`` false), and its path
/// (``HTTPRequest/path``: the target before `?`, `/` when empty) is byte for byte one of the
/// paths. Every other request is built in full and reported as usual.
///
/// Byte equality decides only for ASCII paths: two ASCII strings are equal as `String`s
/// exactly when their bytes are, but a `String` compares by canonical equivalence (U+212A
/// KELVIN SIGN equals `K`) and repairs invalid UTF-8, so a non-ASCII path could be equal to
/// bytes that differ. A configured path with a byte outside ASCII therefore ends the lookup
/// there: a request it could answer, or one after it could, is built and routed the general way.
package struct HTTPBareRoutes: Sendable {
    /// The paths' bytes in order; nil for a path that is not ASCII (it stops the lookup).
    private let paths: [[UInt8]?]

    /// Routes for `paths`, in precedence order. An empty path matches nothing (no request's
    /// path is empty: an empty one is `/`).
    package init(paths: [String]) {
        self.paths = paths.map { path in
            let bytes = Array(path.utf8)
            return bytes.allSatisfy { $0 < 0x80 } ? bytes : nil
        }
    }

    /// The index of the first path equal to `b[path]` (`/` when the range is empty), or nil
    /// when none is, or a non-ASCII path comes first.
    func route(_ b: UnsafeBufferPointer<UInt8>, path: Range<Int>) -> Int? {
        for index in paths.indices {
            guard let candidate = paths[index] else { return nil }
            let equal = candidate.withUnsafeBufferPointer { c -> Bool in
                if path.isEmpty { return c.count == 1 && c[0] == ASCII.slash }
                guard c.count == path.count else { return false }
                var i = 0
                for index in path {
                    if b[index] != c[i] { return false }
                    i &+= 1
                }
                return true
            }
            if equal { return index }
        }
        return nil
    }
}

/// A bare request (see ``HTTPBareRoutes``): what the caller's route needs, and nothing else.
/// The parser has validated its head and framing as for any request, and is ready for the
/// next one on the connection.
package struct HTTPBareRequest: Sendable, Equatable {
    /// The index of its path in the ``HTTPBareRoutes`` given to the parser.
    package let route: Int
    /// The method is `HEAD` (else it is `GET`).
    package let headOnly: Bool
    /// As ``HTTPRequest/version``.
    package let version: HTTPVersion
    /// As ``HTTPRequest/keepAlive``.
    package let keepAlive: Bool

    package init(route: Int, headOnly: Bool, version: HTTPVersion, keepAlive: Bool) {
        self.route = route
        self.headOnly = headOnly
        self.version = version
        self.keepAlive = keepAlive
    }
}

/// What ``HTTPRequestParser/parseEvents(_:bare:)`` produced: an event, as from
/// ``HTTPRequestParser/parseEvents(_:)``, or a bare request in place of a `.request`.
package enum HTTPDriverEvent: Sendable {
    case event(HTTPParseEvent)
    case bare(HTTPBareRequest)
}
