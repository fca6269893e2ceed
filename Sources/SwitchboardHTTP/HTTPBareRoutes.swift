#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// The paths' bytes one after another, in order, up to the first path that is not ASCII
    /// (the lookup stops there). One array: an array of arrays cost a retain per lookup.
    private let bytes: [UInt8]
    /// Where each path ends in `bytes` (it starts where the one before it ends).
    private let ends: [Int]

    /// Routes for `paths`, in precedence order. An empty path matches nothing (no request's
    /// path is empty: an empty one is `/`).
    package init(paths: [String]) {
        var bytes: [UInt8] = []
        var ends: [Int] = []
        for path in paths {
            guard path.utf8.allSatisfy({ $0 < 0x80 }) else { break }
            bytes += path.utf8
            ends.append(bytes.count)
        }
        self.bytes = bytes
        self.ends = ends
    }

    /// The index of the first path equal to `b[path]` (`/` when the range is empty), or nil
    /// when none is (or a non-ASCII path comes first).
    func route(_ b: UnsafeBufferPointer<UInt8>, path: Range<Int>) -> Int? {
        let count = path.isEmpty ? 1 : path.count
        return bytes.withUnsafeBufferPointer { all -> Int? in
            var start = 0
            for index in ends.indices {
                let end = ends[index]
                if end &- start == count {
                    let candidate = all.baseAddress! + start
                    if path.isEmpty ? candidate.pointee == ASCII.slash : memcmp(candidate, b.baseAddress! + path.lowerBound, count) == 0 {
                        return index
                    }
                }
                start = end
            }
            return nil
        }
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
