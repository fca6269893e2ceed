import Switchboard
import SwitchboardIO
import SwitchboardWebSocket
import SwitchboardTestSupport
import CLiburing
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An echo worker with the attacks' levers:
///   "join R" -> "joined R", "say R text" -> text to R's subscribers,
///   "work N" -> burns N ms of the shard's thread, then "done", anything else is echoed.
final class BoundsWorker: WorkerHandler {
    let context: ShardContext
    let handled: BoundsCounter
    init(_ context: ShardContext, _ handled: BoundsCounter) {
        self.context = context
        self.handled = handled
    }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { context.send(socketId, message); return }
        let parts = text.split(separator: " ", maxSplits: 2).map(String.init)
        switch parts.first {
        case "join" where parts.count == 2:
            _ = context.subscribe(socketId, ChannelName(parts[1]))
            context.send(socketId, .text("joined \(parts[1])"))
        case "say" where parts.count == 3:
            _ = context.publish(ChannelName(parts[1]), .text(parts[2]))
        case "burst" where parts.count == 3:
            // N one-byte messages to a channel from one request (a fan-out of tiny frames).
            for _ in 0..<(Int(parts[2]) ?? 0) { _ = context.publish(ChannelName(parts[1]), .text("x")) }
            context.send(socketId, .text("burst done"))
        case "work" where parts.count == 2:
            handled.add()
            let until = monotonicNanoseconds() + UInt64(Int(parts[1]) ?? 0) * 1_000_000
            while monotonicNanoseconds() < until {}
            context.send(socketId, .text("done"))
        default:
            context.send(socketId, message)
        }
    }
}

final class BoundsCounter: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var count = 0
    init() { pthread_mutex_init(&lock, nil) }
    func add() { pthread_mutex_lock(&lock); count += 1; pthread_mutex_unlock(&lock) }
    var value: Int { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return count }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

// residentBytes(): the server's resident set (the tests run it in-process), from
// /proc/self/statm; defined in ChannelStateLifetimeTests.swift.

/// A bystander's echo round trip, in milliseconds.
func roundTripMilliseconds(_ c: TestClient, _ tag: String) throws -> Double {
    let start = monotonicNanoseconds()
    try c.sendText("echo \(tag)")
    let f = try c.readFrame()
    #expect(f.text == "echo \(tag)")
    return Double(monotonicNanoseconds() - start) / 1e6
}

/// The worst of a few round trips.
func worstRoundTrip(_ c: TestClient, _ tag: String, count: Int = 5) throws -> Double {
    var worst = 0.0
    for i in 0..<count { worst = max(worst, try roundTripMilliseconds(c, "\(tag)\(i)")) }
    return worst
}

/// Tolerance on a bystander's worst round trip while an attacker works next to it: debug
/// build, two cores shared with other test processes (load average 12 seen: a thread may wait
/// a few hundred milliseconds for a core). Unbounded work (the attacks below without their
/// limits) costs seconds: 2 s for `batchPerTurn`, 3-4 s for the list_by_role flood.
let bystanderToleranceMilliseconds = 500.0

func boundsServer(_ backend: IOBackendKind, handled: BoundsCounter = BoundsCounter(), shards: Int = 1,
                  configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> ServerFixture {
    try ServerFixture(backend: backend, shards: shards, configure: { c in
        c.webSocket.perMessageDeflate = false
        configure(&c)
    }, worker: { BoundsWorker($0, handled) })
}

func shrinkReceiveBuffer(_ c: TestClient) {
    var rcv: Int32 = 4096
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
}

@Suite("Bounds against hostile clients (issue 17)", .serialized)
struct BoundsTests {
    @Test("pings without reading: pongs coalesce, the last ping is answered, memory stays flat", arguments: backends)
    func pingFlood(backend: IOBackendKind) throws {
        let server = try boundsServer(backend)
        defer { server.stop() }
        let bystander = try server.chatClient()
        let baseline = try worstRoundTrip(bystander, "before")
        let attacker = try server.chatClient(timeoutMilliseconds: 10_000)
        shrinkReceiveBuffer(attacker)
        let heapBefore = mallocInUseBytes(), rssBefore = residentBytes()
        // 2 MB of pings (8 bytes each with the mask): without coalescing, ~260,000 queued pongs
        // at ~110 bytes of heap each, ~28 MB.
        let ping = TestClient.frame(opcode: 9, payload: [0x70])
        var burst: [UInt8] = []
        for _ in 0..<4096 { burst += ping }
        for _ in 0..<64 { try attacker.send(burst) }
        try attacker.sendFrame(opcode: 9, payload: Array("last".utf8))
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_ws_pongs_coalesced_total") > 200_000 })
        #expect(waitUntil(timeoutMilliseconds: 20_000) { server.metric("switchboard_bytes_received_total") >= 64 * burst.count })
        let during = try worstRoundTrip(bystander, "during")
        let heapGrowth = mallocInUseBytes() - heapBefore, rssGrowth = residentBytes() - rssBefore
        // 1 MiB: the driver's event arrays once kept room for every control frame of the
        // largest read (16 bytes per byte read: 1 MiB at 64 KiB reads, 4 MiB at 256 KiB).
        #expect(heapGrowth < 1 << 20, "heap grew \(heapGrowth) bytes")
        #expect(rssGrowth < 16 << 20, "RSS grew \(rssGrowth) bytes")
        #expect(during <= baseline + bystanderToleranceMilliseconds, "bystander \(during) ms vs \(baseline) ms")
        // The attacker reads at last: every pong that was not replaced, the last one answering
        // the last ping.
        var pongs = 0
        while true {
            let f = try attacker.readFrame()
            #expect(f.opcode == 0xA)
            pongs += 1
            if f.text == "last" { break }
        }
        let pings = 64 * 4096 + 1
        #expect(pongs == pings - server.metric("switchboard_ws_pongs_coalesced_total"))
    }

    @Test("tiny fan-out frames are counted with their overhead: non-readers cost their limit, not 20x", arguments: backends)
    func tinyFanout(backend: IOBackendKind) throws {
        let queueLimit = 128 * 1024
        let server = try boundsServer(backend) { c in
            c.io.maxSendQueueBytes = queueLimit
            c.webSocket.slowConsumerPolicy = .drop
        }
        defer { server.stop() }
        let subscribers = 4
        var readers: [TestClient] = []
        for _ in 0..<subscribers {
            let c = try server.chatClient()
            shrinkReceiveBuffer(c)
            try c.sendText("join feed")
            #expect(try c.readFrame().text == "joined feed")
            readers.append(c)
        }
        let bystander = try server.chatClient()
        let baseline = try worstRoundTrip(bystander, "before")
        let publisher = try server.chatClient()
        let heapBefore = mallocInUseBytes()
        // 1,000,000 one-byte messages: 3-byte frames, 3 MB per subscriber, more than the kernel
        // buffers take. Counting payload only, a 128 KiB queue would take ~43,000 of them (~5 MB
        // of heap per subscriber); counted with their overhead, ~1,100.
        let messages = 1_000_000
        for _ in 0..<20 {
            try publisher.sendText("burst feed \(messages / 20)")
            #expect(try publisher.readFrame().text == "burst done")
        }
        #expect(waitUntil(timeoutMilliseconds: 30_000) {
            server.metric("switchboard_fanout_deliveries_total") + server.metric("switchboard_ws_messages_dropped_total")
                >= messages * subscribers
        })
        let during = try worstRoundTrip(bystander, "during")
        let heapGrowth = mallocInUseBytes() - heapBefore
        // Every queue at its limit, and the limit is honest: the heap holds at most that.
        #expect(heapGrowth < subscribers * queueLimit + (1 << 20), "heap grew \(heapGrowth) bytes")
        #expect(server.metric("switchboard_ws_messages_dropped_total") > 0)
        #expect(during <= baseline + bystanderToleranceMilliseconds, "bystander \(during) ms vs \(baseline) ms")
    }

    /// 64 publishes (ws_max_messages_per_turn) in one write to 1,000 subscribers: 64,000
    /// deliveries, ~6 ms of fan-out per message in a debug build (~400 ms in all). Returns how
    /// often the publisher was deferred to the next turn; checks every message arrived in order.
    func deferralsOfFanOutBurst(_ backend: IOBackendKind, sliceMicroseconds: Int, subscribers count: Int = 1000) throws -> Int {
        let server = try boundsServer(backend) { $0.webSocket.maxTurnMicroseconds = sliceMicroseconds }
        defer { server.stop() }
        var subscribers: [TestClient] = []
        for _ in 0..<count {
            let c = try server.chatClient()
            try c.sendText("join feed")
            subscribers.append(c)
        }
        for c in subscribers { #expect(try c.readFrame().text == "joined feed") }
        let publisher = try server.chatClient()
        let deferredBefore = server.metric("switchboard_ws_batches_deferred_total")
        var burst: [UInt8] = []
        for i in 0..<64 { burst += TestClient.frame(opcode: 1, payload: Array("say feed m\(i)".utf8)) }
        try publisher.send(burst)
        #expect(waitUntil(timeoutMilliseconds: 30_000) { server.metric("switchboard_fanout_deliveries_total") == 64 * count })
        for c in [subscribers[0], subscribers[count / 2], subscribers[count - 1]] {
            for i in 0..<64 { #expect(try c.readFrame().text == "m\(i)") }
        }
        return server.metric("switchboard_ws_batches_deferred_total") - deferredBefore
    }

    @Test("a publish's fan-out is charged to its publisher's turn slice at a tenth: batched, and still bounded", arguments: backends)
    func fanOutChargedAtATenth(backend: IOBackendKind) throws {
        // A 50 ms slice: charged in full, the ~400 ms of fan-out defer the burst 6 or more
        // times, a few publishes per turn, and each subscriber gets a send per few frames (the
        // fan-out regression of issue 17's bounds). At a tenth (~40 ms), with decoding and
        // handling 64 short messages, it fits: a slow or preempted run may be deferred once or
        // twice.
        let wide = try deferralsOfFanOutBurst(backend, sliceMicroseconds: 50_000)
        #expect(wide <= 2, "the publisher was deferred \(wide) times with a 50 ms slice")
        // A 1 ms slice and 2,000 subscribers: the tenth (~80 ms) still counts, about one publish
        // per turn (~60 deferrals; 18 or more seen on a loaded machine, where a burst may arrive
        // in several reads); not counted at all, only the handling would (~3 ms: a few
        // deferrals, whatever the subscriber count). 1,000 subscribers left too small a gap
        // under load (9 seen).
        let narrow = try deferralsOfFanOutBurst(backend, sliceMicroseconds: 1_000, subscribers: 2000)
        #expect(narrow >= 10, "the publisher was deferred only \(narrow) times with a 1 ms slice: fan-out is not bounded")
    }

    @Test("a subscriber that stopped reading gets the 1013 close frame, not just EOF", arguments: backends)
    func slowConsumerCloseFrame(backend: IOBackendKind) throws {
        let server = try boundsServer(backend) { c in
            c.io.maxSendQueueBytes = 256 * 1024
            // What the kernel already holds (megabytes) is read before the close frame.
            c.io.lingerTimeoutMilliseconds = 10_000
        }
        defer { server.stop() }
        // A normal receive buffer (a 4 KB window makes reading the backlog take minutes).
        let slow = try server.chatClient(timeoutMilliseconds: 10_000)
        try slow.sendText("join feed")
        #expect(try slow.readFrame().text == "joined feed")
        let publisher = try server.chatClient()
        let payload = String(repeating: "p", count: 60_000)
        var i = 0
        while server.metric("switchboard_ws_slow_consumers_closed_total") == 0 && i < 2000 {
            try publisher.sendText("say feed \(payload)")
            i += 1
            if i % 50 == 0 { _ = waitUntil(timeoutMilliseconds: 50) { false } }
        }
        #expect(server.metric("switchboard_ws_slow_consumers_closed_total") == 1)
        // Reading again: whatever the kernel buffers held, then the close frame (the frames
        // queued behind it in the server were dropped for it).
        var close: TestFrame?
        var dataFrames = 0
        while close == nil {
            let f = try slow.readFrame()
            if f.opcode == 8 { close = f } else { #expect(f.opcode == 1); dataFrames += 1 }
        }
        #expect(close?.closeCode == 1013)
        #expect(dataFrames < i, "\(dataFrames) of \(i) messages arrived: nothing was dropped for the close")
    }

    @Test("an unfinished message fails at the assembly timeout (1008) and gives its memory back", arguments: backends)
    func assemblyTimeout(backend: IOBackendKind) throws {
        let server = try boundsServer(backend) { $0.webSocket.assemblyTimeoutMilliseconds = 300 }
        defer { server.stop() }
        let bystander = try server.chatClient()
        let attacker = try server.chatClient()
        try attacker.sendFrame(opcode: 2, payload: [UInt8](repeating: 1, count: 100_000), fin: false)
        #expect(waitUntil { server.metric("switchboard_shard_buffered_bytes") >= 100_000 })
        let start = monotonicNanoseconds()
        let f = try attacker.readFrame()
        let waited = Double(monotonicNanoseconds() - start) / 1e6
        #expect(f.opcode == 8 && f.closeCode == 1008)
        #expect(waited < 2000)
        #expect(server.metric("switchboard_ws_assembly_timeouts_total") == 1)
        #expect(waitUntil { server.metric("switchboard_shard_buffered_bytes") < 100_000 })
        _ = try worstRoundTrip(bystander, "after")
    }

    @Test("the shard budget: unfinished messages beyond it are refused with 1013; RSS bounded", arguments: backends)
    func assemblyBudget(backend: IOBackendKind) throws {
        let budget = 8 << 20
        let server = try boundsServer(backend) { c in
            c.io.maxBufferedBytesPerShard = budget
            c.io.maxSendQueueBytes = 1 << 20
        }
        defer { server.stop() }
        let bystander = try server.chatClient()
        let baseline = try worstRoundTrip(bystander, "before")
        let rssBefore = residentBytes()
        var attackers: [TestClient] = []
        // 16 connections each start a 4 MiB message with a 1 MiB fragment (reserved up front
        // to 1 MiB, grown as it comes): 64 MiB unbounded, the budget allows 8.
        let fragment = TestClient.frame(opcode: 2, payload: [UInt8](repeating: 7, count: 1 << 20), fin: false)
        for _ in 0..<16 {
            let c = try server.chatClient()
            try c.send(fragment)
            attackers.append(c)
        }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { server.metric("switchboard_ws_over_budget_total") >= 8 })
        let refused = attackers.filter { c in (try? c.readFrame())?.closeCode == 1013 }.count
        #expect(refused >= 8)
        #expect(server.metric("switchboard_shard_buffered_bytes") <= budget)
        let rssGrowth = residentBytes() - rssBefore
        #expect(rssGrowth < budget + (16 << 20), "RSS grew \(rssGrowth) bytes")
        let during = try worstRoundTrip(bystander, "during")
        #expect(during <= baseline + bystanderToleranceMilliseconds, "bystander \(during) ms vs \(baseline) ms")
    }

    @Test("work per turn is bounded; requests of a client that left are dropped", arguments: backends)
    func batchPerTurn(backend: IOBackendKind) throws {
        let handled = BoundsCounter()
        let server = try boundsServer(backend, handled: handled) { $0.webSocket.maxMessagesPerTurn = 4 }
        defer { server.stop() }
        let bystander = try server.chatClient()
        let baseline = try worstRoundTrip(bystander, "before")
        let attacker = try server.chatClient()
        // 400 requests of 5 ms each in one write: 2 s of the shard's thread if run in a row.
        var burst: [UInt8] = []
        for _ in 0..<400 { burst += TestClient.frame(opcode: 1, payload: Array("work 5".utf8)) }
        try attacker.send(burst)
        #expect(waitUntil { handled.value > 0 })
        let during = try worstRoundTrip(bystander, "during", count: 3)
        // Four requests a turn: the bystander waits ~20 ms, not 2 s.
        #expect(during <= baseline + bystanderToleranceMilliseconds, "bystander \(during) ms vs \(baseline) ms")
        Glibc.shutdown(attacker.fd, Int32(SHUT_RDWR))
        #expect(server.waitForNoConnectionsExcept(1))
        let total = handled.value
        #expect(total < 400, "all \(total) requests ran for a client that had left")
        #expect(server.metric("switchboard_ws_batches_deferred_total") > 0)
    }

    @Test("the shard budget sheds the subscribers over their fair share (slow-consumer policy); RSS bounded", arguments: backends)
    func sendBudgetFairShare(backend: IOBackendKind) throws {
        let budget = 4 << 20
        let server = try boundsServer(backend) { c in
            c.io.maxBufferedBytesPerShard = budget
            c.io.maxSendQueueBytes = 2 << 20  // 8 such queues would be 16 MiB; the shard allows 4
        }
        defer { server.stop() }
        var slow: [TestClient] = []
        for _ in 0..<8 {
            let c = try server.chatClient()
            shrinkReceiveBuffer(c)
            try c.sendText("join feed")
            #expect(try c.readFrame().text == "joined feed")
            slow.append(c)
        }
        let bystander = try server.chatClient()
        let baseline = try worstRoundTrip(bystander, "before")
        let rssBefore = residentBytes()
        let publisher = try server.chatClient()
        let payload = String(repeating: "p", count: 16_000)
        for i in 0..<1500 {
            try publisher.sendText("say feed \(payload)")
            if i % 100 == 99 { _ = try roundTripMilliseconds(publisher, "sync\(i)") }
        }
        _ = try roundTripMilliseconds(publisher, "sync-end")
        #expect(server.metric("switchboard_shard_memory_budget_hits_total") > 0)
        #expect(server.metric("switchboard_ws_slow_consumers_closed_total") >= 1)
        #expect(server.metric("switchboard_shard_buffered_bytes") <= 2 * budget)
        let rssGrowth = residentBytes() - rssBefore
        #expect(rssGrowth < 2 * budget + (16 << 20), "RSS grew \(rssGrowth) bytes")
        let during = try worstRoundTrip(bystander, "during")
        #expect(during <= baseline + bystanderToleranceMilliseconds, "bystander \(during) ms vs \(baseline) ms")
    }
}

/// permessage-deflate's memory, measured: RSS per connection with 1,000 sockets, idle and after
/// one message each way. The figures are printed (they go in the README) and bounded.
@Suite("Bounds: permessage-deflate memory per connection", .serialized)
struct DeflateMemoryTests {
    /// 64 bytes as one raw-deflate stored block (RFC 1951 §3.2.4): a valid compressed message
    /// without a compressor in the test.
    static let storedMessage: [UInt8] = [0x00, 0x40, 0x00, 0xBF, 0xFF] + [UInt8](repeating: 0x61, count: 64)

    func perConnection(_ backend: IOBackendKind, deflate: Bool, takeover: Bool = false) throws -> (idle: Int, active: Int) {
        let server = try boundsServer(backend) {
            $0.webSocket.perMessageDeflate = deflate
            $0.webSocket.deflateContextTakeover = takeover
        }
        defer { server.stop() }
        let count = 1000
        var clients: [TestClient] = []
        clients.reserveCapacity(count)
        // What the previous measurement freed stays resident in malloc's free lists, and this
        // one's zlib streams would land on those pages without growing RSS: give it back first.
        _ = mallocTrim(0)
        let before = residentBytes()
        for _ in 0..<count {
            let c = try server.client()
            let r = try c.upgrade(headers: deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "")
            #expect(r.status == 101)
            #expect((r.header("Sec-WebSocket-Extensions") != nil) == deflate)
            clients.append(c)
        }
        let idle = residentBytes()
        for c in clients {
            if deflate {
                try c.sendFrame(opcode: 2, payload: Self.storedMessage, rsv1: true)
            } else {
                try c.sendFrame(opcode: 2, payload: [UInt8](repeating: 0x61, count: 64))
            }
            let f = try c.readFrame()
            #expect(f.opcode == 2 && f.rsv1 == deflate)
        }
        let active = residentBytes()
        return ((idle - before) / count, (active - before) / count)
    }

    @Test("idle sockets hold no zlib state; active ones hold what the budget is charged", arguments: backends)
    func idleAndActiveCost(backend: IOBackendKind) throws {
        let plain = try perConnection(backend, deflate: false)
        let compressed = try perConnection(backend, deflate: true)  // ws_deflate_context_takeover off (the default)
        let takeover = try perConnection(backend, deflate: true, takeover: true)
        print("RSS per connection (\(backend), 1,000 sockets, client side included): plain idle \(plain.idle) B, active \(plain.active) B; deflate idle \(compressed.idle) B, active \(compressed.active) B; deflate with context takeover idle \(takeover.idle) B, active \(takeover.active) B")
        // Lazily made streams: an idle compressed socket costs what a plain one does.
        #expect(compressed.idle <= plain.idle + 4096, "deflate idle \(compressed.idle) vs plain \(plain.idle)")
        #expect(takeover.idle <= plain.idle + 4096, "deflate (takeover) idle \(takeover.idle) vs plain \(plain.idle)")
        let deflater = WebSocketConnection.deflaterBytes(windowBits: 15, memoryLevel: 8)
        let inflater = WebSocketConnection.inflaterBytes(windowBits: 15)
        // Without takeover only the decompressor stays (this client did not offer
        // client_no_context_takeover); with it the compressor's touched pages stay too.
        #expect(compressed.active - plain.active <= inflater, "deflate active \(compressed.active) vs plain \(plain.active)")
        #expect(compressed.active - plain.active > 16 * 1024, "the decompressor was expected to be resident")
        #expect(takeover.active - plain.active <= deflater + inflater, "deflate (takeover) active \(takeover.active) vs plain \(plain.active)")
        #expect(takeover.active - compressed.active > 16 * 1024, "the compressor was expected to be resident with takeover")
    }
}
