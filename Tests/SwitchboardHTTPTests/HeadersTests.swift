import Testing
@testable import SwitchboardHTTP

@Suite struct HeadersTests {
    @Test func orderedCaseInsensitive() {
        var h: HTTPHeaders = ["Content-Type": "text/plain", "X-A": "1"]
        h.add(name: "x-a", value: "2")
        #expect(h.count == 3)
        #expect(h["X-a"] == "1")
        #expect(h.values(for: "X-A") == ["1", "2"])
        #expect(h.contains(name: "content-type"))
        #expect(!h.contains(name: "content"))
        #expect(h["missing"] == nil)
        #expect(h.map(\.name) == ["Content-Type", "X-A", "x-a"])
    }

    @Test func replaceAndRemove() {
        var h = HTTPHeaders([("A", "1"), ("B", "2"), ("a", "3")])
        h.replaceOrAdd(name: "A", value: "9")
        #expect(h.map(\.value) == ["9", "2"])
        h.replaceOrAdd(name: "C", value: "4")
        #expect(h.map(\.name) == ["A", "B", "C"])
        h.remove(name: "b")
        #expect(h.map(\.name) == ["A", "C"])
        #expect(h == HTTPHeaders([("A", "9"), ("C", "4")]))
        #expect(h != HTTPHeaders([("C", "4"), ("A", "9")]), "order matters")
    }

    @Test func minimumCapacityStartsEmpty() {
        var h = HTTPHeaders(minimumCapacity: 5)
        #expect(h.count == 0 && h == HTTPHeaders() && h["Upgrade"] == nil)
        h.add(name: "Upgrade", value: "websocket")
        h.add(name: "Connection", value: "Upgrade")
        #expect(h == ["Upgrade": "websocket", "Connection": "Upgrade"])
    }

    @Test func tokens() {
        let h: HTTPHeaders = ["Connection": "keep-alive,  Upgrade ,", "connection": "TE"]
        #expect(h.containsToken("upgrade", in: "CONNECTION"))
        #expect(h.containsToken("te", in: "connection"))
        #expect(h.containsToken("Keep-Alive", in: "Connection"))
        #expect(!h.containsToken("up", in: "Connection"))
        #expect(!h.containsToken("close", in: "Connection"))
        #expect(!h.containsToken("upgrade", in: "Upgrade"))
    }
}
