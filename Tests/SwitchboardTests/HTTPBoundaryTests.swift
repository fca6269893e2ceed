import HTTPTypes
@testable import Switchboard
import SwitchboardHTTP
import Testing

/// `WorkerRequest(parsed:)` maps the common field names to swift-http-types' own names without
/// `HTTPField.Name(_:)`: the result must be the same name (raw spelling as received, canonical
/// lowercase) for the exact spelling and for every other one.
@Suite("HTTP boundary: the handler's field names")
struct HTTPBoundaryTests {
    static let names = [
        "Host", "Accept", "Origin", "Cookie", "Pragma", "Upgrade", "Connection", "User-Agent", "Content-Type",
        "Cache-Control", "Authorization", "Content-Length", "Accept-Encoding", "Accept-Language", "Sec-WebSocket-Key",
        "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "X-Other",
    ]

    @Test("every spelling of a common name maps to what HTTPField.Name(_:) makes of it")
    func commonNames() throws {
        var pairs: [(String, String)] = []
        for name in Self.names {
            let last = name.last!
            let flipped = String(name.dropLast()) + (last.isUppercase ? last.lowercased() : last.uppercased())
            for spelling in [name, name.lowercased(), name.uppercased(), flipped, String(name.dropLast()) + "x"] {
                pairs.append((spelling, "value of \(spelling)"))
            }
        }
        let request = WorkerRequest(parsed: ParsedRequest(method: "GET", url: "/", headers: HTTPHeaders(pairs)))
        #expect(request.headerFields.count == pairs.count)
        for (field, (spelling, value)) in zip(request.headerFields, pairs) {
            let reference = try #require(HTTPField.Name(spelling))
            #expect(field.name == reference, "\(spelling)")
            #expect(field.name.rawName == spelling)
            #expect(field.name.canonicalName == spelling.lowercased())
            #expect(field.value == value)
        }
        #expect(request.headerFields[values: .secWebSocketKey].first == "value of Sec-WebSocket-Key")
        #expect(request.headerFields[values: .upgrade] == ["value of Upgrade", "value of upgrade", "value of UPGRADE", "value of UpgradE"])
    }

    @Test("path and query: derived from the target only when not given")
    func pathAndQuery() {
        let derived = WorkerRequest(method: .get, target: "/a/b?x=1?y")
        #expect(derived.path == "/a/b" && derived.query == "x=1?y")
        let bare = WorkerRequest(method: .get, target: "/a")
        #expect(bare.path == "/a" && bare.query == "")
        let pathOnly = WorkerRequest(method: .get, target: "/a?q", path: "/given")
        #expect(pathOnly.path == "/given" && pathOnly.query == "q")
        let queryOnly = WorkerRequest(method: .get, target: "/a?q", query: "given")
        #expect(queryOnly.path == "/a" && queryOnly.query == "given")
        let both = WorkerRequest(method: .get, target: "/a?q", path: "/p", query: "")
        #expect(both.path == "/p" && both.query == "")
        let parsed = WorkerRequest(parsed: ParsedRequest(method: "GET", url: "/room?id=7"))
        #expect(parsed.target == "/room?id=7" && parsed.path == "/room" && parsed.query == "id=7")
    }
}
