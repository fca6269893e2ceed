import Testing
@testable import SwitchboardHTTP

/// `parseEvents(_:bare:)`: a built-in route's request comes out bare (no Strings, no header
/// list); every other request, and every error, as from `parseEvents(_:)`.
@Suite struct BareRoutesTests {
    enum Outcome: Equatable {
        case bare(HTTPBareRequest)
        case request(method: String, path: String)
        case error(HTTPParseError)
    }

    /// The outcomes of `raw`, fed whole and byte by byte (they must agree), bodies buffered.
    func outcomes(_ raw: String, _ paths: [String] = ["/health", "/metrics"]) -> [Outcome] {
        let routes = HTTPBareRoutes(paths: paths)
        func run(step: Int) -> [Outcome] {
            var parser = HTTPRequestParser()
            var result: [Outcome] = []
            let input = Array(raw.utf8)
            var start = 0
            while start < input.count {
                let piece = Array(input[start..<min(input.count, start + step)])
                start += piece.count
                var failed = false
                piece.withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count || parser.hasEventPending {
                        let (consumed, event) = parser.parseEvents(UnsafeRawBufferPointer(rebasing: bytes[offset...]), bare: routes)
                        offset += consumed
                        switch event {
                        case .bare(let b):
                            result.append(.bare(b))
                            #expect(!parser.hasPartialRequest)
                        case .event(.request(let r)): result.append(.request(method: r.method, path: r.path))
                        case .event(.error(let e)): result.append(.error(e)); failed = true; return
                        default: break
                        }
                    }
                }
                if failed { break }
            }
            return result
        }
        let whole = run(step: raw.utf8.count)
        #expect(run(step: 1) == whole, "byte by byte differs for \(raw.debugDescription)")
        return whole
    }

    func bare(_ route: Int, head: Bool = false, _ version: HTTPVersion = .http1_1, keepAlive: Bool = true) -> Outcome {
        .bare(HTTPBareRequest(route: route, headOnly: head, version: version, keepAlive: keepAlive))
    }

    @Test func routesRequestsFromTheRequestLine() {
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\n\r\n") == [bare(0)])
        #expect(outcomes("HEAD /metrics?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == [bare(1, head: true, .http1_0)])
        #expect(outcomes("GET /health HTTP/1.0\r\n\r\n") == [bare(0, .http1_0, keepAlive: false)])
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n") == [bare(0, keepAlive: false)])
        // The path, as HTTPRequest.path: absolute-form, a query, an empty path is "/".
        #expect(outcomes("GET http://h:1/health?a HTTP/1.1\r\nHost: h\r\n\r\n") == [bare(0)])
        #expect(outcomes("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", ["/health", "/"]) == [bare(1)])
        #expect(outcomes("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", ["/"]) == [bare(0)])
        // A zero Content-Length is no body.
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") == [bare(0)])
        // The first equal path wins (health before metrics when both are the same).
        #expect(outcomes("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", ["/x", "/x"]) == [bare(0)])
    }

    @Test func otherRequestsAreBuilt() {
        let cases: [(String, String)] = [
            ("POST /health HTTP/1.1\r\nHost: h\r\n\r\n", "/health"),
            ("get /health HTTP/1.1\r\nHost: h\r\n\r\n", "/health"),
            ("GET /Health HTTP/1.1\r\nHost: h\r\n\r\n", "/Health"),
            ("GET /health/ HTTP/1.1\r\nHost: h\r\n\r\n", "/health/"),
            ("GET /healt HTTP/1.1\r\nHost: h\r\n\r\n", "/healt"),
            ("GET /health HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", "/health"),
            ("GET /health HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "/health"),
            ("GET /health HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", "/health"),
        ]
        for (raw, path) in cases {
            let method = String(raw.prefix { $0 != " " })
            #expect(outcomes(raw) == [.request(method: method, path: path)], "\(raw.debugDescription)")
        }
        // `Connection: upgrade` without `Upgrade` is no upgrade: bare.
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n") == [bare(0)])
    }

    /// A String compares by canonical equivalence: U+212A KELVIN SIGN is equal to `K` as a
    /// String though not as bytes. Bytes decide only between ASCII paths.
    @Test func nonASCIIPathsGoTheGeneralWay() {
        let kelvin = "GET /\u{212A} HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(outcomes(kelvin, ["/K"]) == [.request(method: "GET", path: "/\u{212A}")])
        #expect(("/\u{212A}" as String) == "/K", "the equivalence this guards against")
        // A non-ASCII configured path stops the lookup: a later ASCII path is not bare.
        #expect(outcomes("GET /K HTTP/1.1\r\nHost: h\r\n\r\n", ["/\u{212A}", "/K"]) == [.request(method: "GET", path: "/K")])
        #expect(outcomes("GET /K HTTP/1.1\r\nHost: h\r\n\r\n", ["/K", "/\u{212A}"]) == [bare(0)])
        #expect(outcomes("GET /\u{E9} HTTP/1.1\r\nHost: h\r\n\r\n", ["/\u{E9}"]) == [.request(method: "GET", path: "/\u{E9}")])
        // An empty path matches nothing.
        #expect(outcomes("GET / HTTP/1.1\r\nHost: h\r\n\r\n", ["", "/"]) == [bare(1)])
    }

    @Test func pipelinedAndErrors() {
        let three = "GET /health HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /health HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(outcomes(three) == [bare(0), .request(method: "GET", path: "/a"), bare(0, head: true)])
        // The head is validated before anything is reported.
        #expect(outcomes("GET /health HTTP/1.1\r\n\r\n") == [.error(.badRequest("missing Host"))])
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n") == [.error(.badRequest("duplicate Host"))])
        #expect(outcomes("GET /health HTTP/1.1\r\nHost: h\r\n\r\nGET /health HTTP/1.1\nHost: h\r\n\r\n") == [bare(0), .error(.badRequest("bare LF"))])
    }

    /// Every row of BAD_INPUTS.md is rejected with its status on the bare path too, whole and
    /// byte by byte, with routes for its paths (`/`, the rows' usual target) in place.
    @Test(arguments: badInputs)
    func badInputsRejectedOnTheBarePath(_ input: BadInput) {
        // (The rows are written as Strings: their bytes are their UTF-8.)
        let got = outcomes(String(decoding: input.raw, as: UTF8.self), ["/", "/health", "/x"])
        guard case .error(let error) = got.last else {
            Issue.record("not rejected: \(got)")
            return
        }
        #expect(error.status == input.expected.status)
    }
}
