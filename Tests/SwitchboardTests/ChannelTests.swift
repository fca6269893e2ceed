import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import CLiburing
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A chat worker on the public API only: rooms are channels.
///   "join R" -> "joined R true|false", "leave R" -> "left R true|false",
///   "say R text" -> text to every subscriber of R, "copy A B" -> "copied"
final class ChatWorker: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { return }
        let parts = text.split(separator: " ", maxSplits: 2).map(String.init)
        switch parts.first {
        case "join" where parts.count == 2:
            let ok = context.subscribe(socketId, ChannelName(parts[1])) == .subscribed
            context.send(socketId, .text("joined \(parts[1]) \(ok)"))
        case "leave" where parts.count == 2:
            let ok = context.unsubscribe(socketId, ChannelName(parts[1]))
            context.send(socketId, .text("left \(parts[1]) \(ok)"))
        case "say" where parts.count == 3:
            context.publish(ChannelName(parts[1]), .text(parts[2]))
        case "copy" where parts.count == 3:
            context.broker.copySubscriptions(from: ChannelName(parts[1]), to: ChannelName(parts[2]))
            context.send(socketId, .text("copied"))
        default:
            context.send(socketId, .text("?"))
        }
    }
}

func chatServer(_ backend: IOBackendKind, shards: Int = 2, configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> ServerFixture {
    try ServerFixture(backend: backend, shards: shards, configure: { c in
        c.webSocket.perMessageDeflate = false
        configure(&c)
    }, worker: { ChatWorker($0) })
}

extension ServerFixture {
    func chatClient(timeoutMilliseconds: Int = 5000) throws -> TestClient {
        let c = try client(timeoutMilliseconds: timeoutMilliseconds)
        #expect(try c.upgrade().status == 101)
        return c
    }
}

extension TestClient {
    func command(_ text: String, expect reply: String) throws {
        try sendText(text)
        let f = try readFrame()
        #expect(f.text == reply, "\(text)")
    }
}

func mallocInUseBytes() -> Int { Int(sb_malloc_in_use()) }

@Suite("Channels: subscribe, fan-out, order, backpressure", .serialized)
struct ChannelTests {
    @Test("join/leave results, say reaches members only, copySubscriptions, auto-leave on close", arguments: backends)
    func basics(backend: IOBackendKind) throws {
        let server = try chatServer(backend)
        defer { server.stop() }
        let a = try server.chatClient(), b = try server.chatClient(), outsider = try server.chatClient()
        try a.command("join lobby", expect: "joined lobby true")
        try a.command("join lobby", expect: "joined lobby false")
        try b.command("join lobby", expect: "joined lobby true")
        try outsider.sendText("say lobby hello all")
        #expect(try a.readFrame().text == "hello all")
        #expect(try b.readFrame().text == "hello all")
        try b.command("leave lobby", expect: "left lobby true")
        try b.command("leave lobby", expect: "left lobby false")
        try a.command("copy lobby annex", expect: "copied")
        #expect(waitUntil { server.metric("switchboard_subscriptions") == 2 })
        try outsider.sendText("say annex in the annex")
        #expect(try a.readFrame().text == "in the annex")
        b.setReceiveTimeout(milliseconds: 200)
        #expect(throws: TestClient.Failure.self) { try b.readFrame() }
        // A closed socket leaves its channels.
        try a.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        #expect(a.isClosedByServer())
        #expect(waitUntil { server.metric("switchboard_subscriptions") == 0 })
        #expect(waitUntil { server.metric("switchboard_channels_local") == 0 })
    }

    @Test("1 publisher -> 10,000 subscribers over both shards: every message, same order", arguments: backends)
    func tenThousandSubscribers(backend: IOBackendKind) throws {
        raiseFileLimit()
        let count = fileLimit() >= 25_000 ? 10_000 : (fileLimit() - 500) / 2
        let server = try chatServer(backend)
        defer { server.stop() }
        var subscribers: [TestClient] = []
        subscribers.reserveCapacity(count)
        for _ in 0..<count {
            let c = try server.chatClient()
            try c.sendText("join news")
            subscribers.append(c)
        }
        for c in subscribers { #expect(try c.readFrame().text == "joined news true") }
        #expect(waitUntil { server.metric("switchboard_subscriptions") == count })
        let perShard = server.broker.metricsText().split(separator: "\n").filter { $0.hasPrefix("switchboard_subscriptions{") }
        #expect(perShard.allSatisfy { !$0.hasSuffix(" 0") }, "subscribers on every shard: \(perShard)")
        let publisher = try server.chatClient()
        let messages = (0..<20).map { "news item \($0)" }
        for m in messages { try publisher.sendText("say news \(m)") }
        for c in subscribers {
            for m in messages {
                let f = try c.readFrame()
                guard f.text == m else { Issue.record("expected \(m), got \(f.text)"); return }
            }
        }
        #expect(server.metric("switchboard_fanout_deliveries_total") == count * messages.count)
    }

    @Test("subscribing on many shards while a publisher runs: no gap, no message before the join, one order", arguments: backends)
    func subscribeRacesPublish(backend: IOBackendKind) throws {
        let server = try chatServer(backend, shards: 2)
        defer { server.stop() }
        let publisher = try server.chatClient()
        let marker = try server.chatClient()
        let publishing = ManagedFlag()
        let pubThread = OSThread.spawn(name: "publisher") {
            var i = 0
            while !publishing.isSet && i < 100_000 {
                try? publisher.sendText("say race n\(i)")
                i += 1
                if i % 64 == 0 { usleep(200) }
            }
        }!
        var joined: [(TestClient, String)] = []
        for k in 0..<40 {
            let c = try server.chatClient()
            try c.sendText("join race")
            // Everything before the join reply is not channel traffic: nothing from before the
            // subscribe may arrive.
            var f = try c.readFrame()
            while f.text != "joined race true" {
                Issue.record("frame before the join reply: \(f.text)")
                f = try c.readFrame()
            }
            // Published only after the join completed: must arrive.
            let mark = "mark\(k)"
            try marker.sendText("say race \(mark)")
            joined.append((c, mark))
        }
        publishing.set()
        pubThread.join()
        try marker.sendText("say race END")
        var sequences: [[String]] = []
        for (c, mark) in joined {
            var seen: [String] = []
            while true {
                let t = try c.readFrame().text
                seen.append(t)
                if t == "END" { break }
            }
            #expect(seen.contains(mark), "\(mark) missed")
            sequences.append(seen)
        }
        // One order: every subscriber's list is a suffix of the earliest subscriber's list, and
        // the publisher's own numbers appear without a gap.
        let longest = sequences[0]
        for s in sequences {
            #expect(Array(longest.suffix(s.count)) == s)
            let numbers = s.filter { $0.hasPrefix("n") }.compactMap { Int($0.dropFirst()) }
            if let first = numbers.first {
                #expect(numbers == Array(first..<(first + numbers.count)), "gap in publisher sequence")
            }
        }
    }

    @Test("subscribe/unsubscribe churn under load; after leaving nothing more arrives", arguments: backends)
    func churn(backend: IOBackendKind) throws {
        let server = try chatServer(backend)
        defer { server.stop() }
        let publisher = try server.chatClient()
        let clients = try (0..<20).map { _ in try server.chatClient() }
        for round in 0..<25 {
            for (i, c) in clients.enumerated() where (i + round) % 3 != 0 {
                try c.command("join churn", expect: "joined churn true")
            }
            try publisher.sendText("say churn r\(round)")
            for (i, c) in clients.enumerated() where (i + round) % 3 != 0 {
                #expect(try c.readFrame().text == "r\(round)")
                try c.command("leave churn", expect: "left churn true")
            }
        }
        try publisher.sendText("say churn after")
        for c in clients {
            c.setReceiveTimeout(milliseconds: 50)
            #expect(throws: TestClient.Failure.self) { try c.readFrame() }
        }
        #expect(waitUntil { server.metric("switchboard_subscriptions") == 0 })
    }

    @Test("a slow subscriber is closed by policy; the others get everything", arguments: backends)
    func slowSubscriber(backend: IOBackendKind) throws {
        let server = try chatServer(backend) { $0.io.maxSendQueueBytes = 256 * 1024 }
        defer { server.stop() }
        let slow = try server.chatClient()
        var rcv: Int32 = 4096
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
        try slow.command("join feed", expect: "joined feed true")
        let fast = try server.chatClient()
        try fast.command("join feed", expect: "joined feed true")
        let publisher = try server.chatClient()
        let payload = String(repeating: "p", count: 60_000)
        // 24 MB toward a reader that reads nothing: beyond what kernel buffers absorb.
        for i in 0..<400 {
            try publisher.sendText("say feed \(i) \(payload)")
            #expect(try fast.readFrame().text.hasPrefix("\(i) "))
        }
        #expect(waitUntil { server.metric("switchboard_ws_slow_consumers_closed_total") == 1 })
        #expect(waitUntil { server.metric("switchboard_subscriptions") == 1 })
    }

    @Test("limits: subscriptions per socket; stale ids refused")
    func limits() async throws {
        let server = try chatServer(.uring) { $0.maxSubscriptionsPerSocket = 2 }
        defer { server.stop() }
        let c = try server.chatClient()
        try c.command("join a", expect: "joined a true")
        try c.command("join b", expect: "joined b true")
        try c.command("join c", expect: "joined c false")
        #expect(server.metric("switchboard_subscription_limit_hits_total") == 1)
        let id = SocketID(shard: 0, slot: 0, generation: 0xFFFFFF)
        #expect(try await server.broker.subscribe(id, "a") == .notFound)
        #expect(try await server.broker.subscriberCount("a") == 1)
    }

    @Test("fan-out shares one buffer: 1 MiB to 100 non-reading subscribers costs about 1 MiB")
    func oneBufferForAll() throws {
        let server = try chatServer(.uring, shards: 1) { $0.io.maxSendQueueBytes = 64 << 20 }
        defer { server.stop() }
        var subscribers: [TestClient] = []
        for _ in 0..<100 {
            let c = try server.chatClient()
            var rcv: Int32 = 4096
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
            try c.command("join big", expect: "joined big true")
            subscribers.append(c)
        }
        let publisher = try server.chatClient()
        // A round trip: the shard has finished with the publisher's connection (upgrade, the
        // session, a first message) before the baseline is taken.
        try publisher.command("leave big", expect: "left big false")
        let before = mallocInUseBytes()
        try publisher.sendText("say big " + String(repeating: "b", count: 1 << 20))
        #expect(waitUntil { server.metric("switchboard_fanout_deliveries_total") == 100 })
        let grown = mallocInUseBytes() - before
        // A copy per subscriber would be 100 MiB; one shared frame plus the inbound message is
        // a few MiB.
        #expect(grown < 8 << 20, "heap grew by \(grown) bytes")
    }
}

final class ManagedFlag: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var flag = false
    init() { pthread_mutex_init(&lock, nil) }
    func set() { pthread_mutex_lock(&lock); flag = true; pthread_mutex_unlock(&lock) }
    var isSet: Bool { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return flag }
}
