@testable import Switchboard
import SwitchboardHTTP
import SwitchboardIO
import Testing

/// `ResponseCache` keeps the `Date` value and the health answer serialized with it: the bytes
/// must be exactly the writer's, shared within a second and renewed at the next one. The clock
/// is a parameter, so the second boundary is stepped, not waited for.
@Suite("Response cache: Date per second, shared health bytes")
struct ResponseCacheTests {
    /// 2001-09-09 01:46:40 UTC, a Sunday.
    private let second = 1_000_000_000

    private func health(date: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nDate: \(date)\r\n\r\n{\"status\":\"ok\"}".utf8)
    }

    @Test("the health bytes are the writer's, shared within a second, renewed at the next")
    func secondBoundary() {
        var cache = ResponseCache(sendsDate: true, health: BuiltinRoutes.health)
        cache.refresh(unixSeconds: second)
        #expect(cache.date == "Sun, 09 Sep 2001 01:46:40 GMT")
        let first = cache.keepAliveHealthBytes()
        #expect(first.array == health(date: "Sun, 09 Sep 2001 01:46:40 GMT"))
        var written: [UInt8] = []
        HTTPResponseWriter.write(BuiltinRoutes.health, keepAlive: true, date: cache.date, into: &written)
        #expect(first.array == written)

        // The same second (ticks come many times a second): the same block, not a copy.
        cache.refresh(unixSeconds: second)
        #expect(cache.keepAliveHealthBytes().base == first.base)

        cache.refresh(unixSeconds: second + 1)
        #expect(cache.date == "Sun, 09 Sep 2001 01:46:41 GMT")
        let next = cache.keepAliveHealthBytes()
        #expect(next.base != first.base)
        #expect(next.array == health(date: "Sun, 09 Sep 2001 01:46:41 GMT"))
        // Bytes already queued on connections keep the old second's answer intact.
        #expect(first.array == health(date: "Sun, 09 Sep 2001 01:46:40 GMT"))
    }

    /// The driver's path: a +1 reference the send queue takes over. The same block as
    /// `keepAliveHealthBytes()`, made on first use whichever is called first.
    @Test("the retained health bytes are the shared block")
    func retainedBytes() {
        var cache = ResponseCache(sendsDate: true, health: BuiltinRoutes.health)
        cache.refresh(unixSeconds: second)
        let first = OutboundBytes(storage: cache.retainedKeepAliveHealthBytes().takeRetainedValue())
        #expect(first.array == health(date: "Sun, 09 Sep 2001 01:46:40 GMT"))
        #expect(cache.keepAliveHealthBytes().base == first.base)
        let again = OutboundBytes(storage: cache.retainedKeepAliveHealthBytes().takeRetainedValue())
        #expect(again.base == first.base)
        cache.refresh(unixSeconds: second + 1)
        let next = OutboundBytes(storage: cache.retainedKeepAliveHealthBytes().takeRetainedValue())
        #expect(next.base != first.base && next.array == health(date: "Sun, 09 Sep 2001 01:46:41 GMT"))
        #expect(first.array == health(date: "Sun, 09 Sep 2001 01:46:40 GMT"))
    }

    @Test("without Date (send_date_header false) the bytes never change")
    func withoutDate() {
        var cache = ResponseCache(sendsDate: false, health: BuiltinRoutes.health)
        cache.refresh(unixSeconds: second)
        #expect(cache.date == nil)
        let first = cache.keepAliveHealthBytes()
        #expect(first.array == Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}".utf8))
        cache.refresh(unixSeconds: second + 1)
        #expect(cache.keepAliveHealthBytes().base == first.base)
    }
}
