import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing

@Suite("Connection broker: concurrency", .serialized)
struct ConnectionBrokerConcurrencyTests {
    /// Pairs on both shards, each on its own thread: open, messages both ways, close, then a
    /// disconnect while channels are open and messages in flight. The registry and gauges end
    /// empty, every id is unique, and every message arrives in order.
    @Test("8 pairs in parallel: open, 100 messages each way, close, abrupt disconnects")
    func parallelPairs() throws {
        let server = try CBServer(shards: 2)
        defer { server.stop() }
        let pairs = 8
        let clients = try (0..<(pairs * 2)).map { i in try server.registered("cc\(i / 2)") }
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: pairs) { p in
            let a = clients[2 * p], b = clients[2 * p + 1]
            do {
                let ch = try a.open(to: b)
                var extra: [String] = []
                for _ in 0..<3 { extra.append(try a.open(to: b)) }
                for i in 0..<100 {
                    try a.request("message", "\"channelId\":\"\(ch)\",\"payload\":{\"i\":\(i)}")
                    try b.request("message", "\"channelId\":\"\(ch)\",\"payload\":{\"i\":\(i)}")
                }
                // Each side receives 100 channel_message (in order) and 100 channel_message_sent,
                // interleaved arbitrarily.
                for (me, name) in [(a, "a"), (b, "b")] {
                    var next = 0, sent = 0
                    while next < 100 || sent < 100 {
                        let m = try me.read()
                        switch m["type"] as? String {
                        case "channel_message":
                            if (m["payload"] as? [String: Any])?["i"] as? Int != next { throw Failure("\(name) order at \(next): \(m)") }
                            next += 1
                        case "channel_message_sent": sent += 1
                        default: throw Failure("\(name) unexpected \(m)")
                        }
                        if let id = m["id"] as? Int, !server.record(id) { throw Failure("duplicate id \(id)") }
                    }
                }
                let cid = try a.request("close", "\"channelId\":\"\(ch)\"")
                let closed = try a.read()
                if closed["type"] as? String != "channel_closed" || closed["replyTo"] as? Int != cid { throw Failure("close: \(closed)") }
                let note = try b.read()
                if note["type"] as? String != "channel_closed_notification" { throw Failure("note: \(note)") }
                // Messages in flight, then a vanishes: b is told about the 3 remaining channels.
                for e in extra { try a.request("message", "\"channelId\":\"\(e)\",\"payload\":0") }
                a.socket.shutdownWrite()
                var notified = Set<String>()
                while notified.count < 3 {
                    let m = try b.read()
                    if m["type"] as? String == "channel_closed_notification" { notified.insert(m["channelId"] as! String) }
                    else if m["type"] as? String != "channel_message" { throw Failure("after disconnect: \(m)") }
                }
                if notified != Set(extra) { throw Failure("notified \(notified)") }
            } catch {
                failures.withLock { $0.append("pair \(p): \(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(waitUntil { server.cb.counts == (pairs, 0) })
        for c in clients { c.socket.shutdownWrite() }
        #expect(waitUntil { server.cb.counts == (0, 0) })
        #expect(waitUntil { server.cb.metrics.registeredConnections.load(ordering: .relaxed) == 0 })
        #expect(server.cb.metrics.openChannels.load(ordering: .relaxed) == 0)
        #expect(server.cb.metrics.channelsOpened.load(ordering: .relaxed) == pairs * 4)
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
