import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The slots a `DeferringWorker` handed out, by request number (across shard threads).
final class SlotBox: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var _slots: [Int: ResponseSlot] = [:]
    init() { pthread_mutex_init(&lock, nil) }
    func add(_ n: Int, _ slot: ResponseSlot) { pthread_mutex_lock(&lock); _slots[n] = slot; pthread_mutex_unlock(&lock) }
    var count: Int { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _slots.count }
    subscript(n: Int) -> ResponseSlot? { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return _slots[n] }
}

/// `/defer/N`: deferred, the slot goes to the box (the test answers it).
/// `/whoami`: deferred and answered at once, inside the handler, with the connection's id.
/// Everything else: `TestWorker` (e.g. `/n/X` answers X at once).
final class DeferringWorker: WorkerHandler {
    let box: SlotBox
    let plain = TestWorker()
    init(_ box: SlotBox) { self.box = box }

    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        if request.path.hasPrefix("/defer/"), let n = Int(request.path.dropFirst(7)) {
            let slot = context.deferResponse()
            box.add(n, slot)
            return .deferred(slot)
        }
        if request.path == "/whoami" {
            let slot = context.deferResponse()
            slot.respond(WorkerResponse(body: "\(slot.connection.rawValue)"))
            return .deferred(slot)
        }
        return plain.handleHttpRequest(request, context: context)
    }
}

/// The exact bytes of a deferred answer to request `n`.
func deferredAnswer(_ n: Int) -> WorkerResponse {
    WorkerResponse(status: .ok, headerFields: [.contentType: "text/plain"], body: "d\(n)")
}

func expectedDeferredBytes(_ n: Int) -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \("d\(n)".utf8.count)\r\n\r\nd\(n)"
}

func expectedPlainBytes(_ body: String) -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
}

@Suite("Deferred HTTP responses over real sockets")
struct DeferredResponseTests {
    func server(_ backend: IOBackendKind, _ box: SlotBox, shards: Int = 2,
                configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> ServerFixture {
        try ServerFixture(backend: backend, shards: shards, configure: configure, worker: { _ in DeferringWorker(box) })
    }

    @Test("1,000 pipelined requests, 900 answered out of order from tasks: answers leave in request order, exact bytes", arguments: backends)
    func pipelinedOutOfOrder(backend: IOBackendKind) async throws {
        let box = SlotBox()
        let server = try server(backend, box)
        defer { server.stop() }
        let c = try server.client()
        var requests = ""
        var expected = ""
        var deferred: [Int] = []
        for i in 0..<1000 {
            // Every tenth is answered at once: it must wait behind the deferred ones before it.
            if i % 10 == 0 {
                requests += get("/n/\(i)")
                expected += expectedPlainBytes("\(i)")
            } else {
                requests += get("/defer/\(i)")
                expected += expectedDeferredBytes(i)
                deferred.append(i)
            }
        }
        try c.send(requests)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { box.count == deferred.count })
        // Nothing may leave before request 1 (deferred) is answered, though 0 was ready.
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("0").utf8))
        c.setReceiveTimeout(milliseconds: 100)
        #expect(throws: TestClient.Failure.self) { try c.fill() }
        c.setReceiveTimeout(milliseconds: 5000)
        // Answered from concurrent tasks, newest request first.
        let slots = deferred.map { box[$0]! }
        await withTaskGroup(of: Void.self) { group in
            for (i, slot) in zip(deferred, slots).reversed() {
                group.addTask { #expect(slot.respond(deferredAnswer(i)) == .queued) }
            }
        }
        var received = Array(expectedPlainBytes("0").utf8)
        while received.count < expected.utf8.count {
            let r = try c.readResponse()
            received += r.raw
        }
        #expect(received == Array(expected.utf8))
        #expect(server.metric("switchboard_http_deferred_total") == deferred.count)
        #expect(server.metric("switchboard_http_deferred_pending") == 0)
        // A second answer to a slot already answered is ignored.
        slots[0].respond(WorkerResponse(body: "again"))
        try c.send(get("/n/end"))
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("end").utf8))
    }

    @Test("a client that leaves before its deferred answer: nothing leaks, the late answer never reaches the slot's next tenant", arguments: backends)
    func clientVanishes(backend: IOBackendKind) throws {
        let box = SlotBox()
        // One shard: the next connection takes the same slot (another generation).
        let server = try server(backend, box, shards: 1)
        defer { server.stop() }
        do {
            let warm = try server.client()
            try warm.send(get("/n/warm"))
            _ = try warm.readResponse()
        }
        #expect(server.waitForNoConnections())
        let baseline = openFileDescriptorCount()
        var first: SocketID? = nil
        do {
            let a = try server.client()
            try a.send(get("/defer/1"))
            #expect(waitUntil { box.count == 1 })
            #expect(server.metric("switchboard_http_deferred_pending") == 1)
            first = box[1]?.connection
        }
        #expect(server.waitForNoConnections())
        #expect(waitUntil { server.metric("switchboard_http_deferred_pending") == 0 })
        #expect(server.metric("switchboard_http_deferred_abandoned_total") == 1)

        do {
            let b = try server.client()
            try b.send(get("/whoami"))
            let me = SocketID(rawValue: UInt64(try b.readResponse().bodyText) ?? 0)
            let gone = try #require(first)
            #expect(me.slot == gone.slot && me.generation != gone.generation, "\(me) should reuse the slot of \(gone)")
            // The late answer reaches the shard and is dropped there: b sees only its own answers.
            #expect(box[1]!.respond(deferredAnswer(1)) == .queued)
            try b.send(get("/n/after"))
            #expect(try b.readResponse().raw == Array(expectedPlainBytes("after").utf8))
            b.setReceiveTimeout(milliseconds: 200)
            #expect(throws: TestClient.Failure.self) { try b.fill() }
            #expect(b.buffered.isEmpty)
            #expect(server.metric("switchboard_http_deferred_pending") == 0)
            b.shutdownWrite()
            _ = b.isClosedByServer()
        }
        // 200 more, each owing three answers when it leaves: no state grows.
        for k in 0..<200 {
            let v = try server.client()
            try v.send(get("/defer/\(1000 + 3 * k)") + get("/defer/\(1001 + 3 * k)") + get("/defer/\(1002 + 3 * k)"))
            #expect(waitUntil { box.count == 1 + 3 * (k + 1) })
        }
        #expect(server.waitForNoConnections())
        #expect(waitUntil { server.metric("switchboard_http_deferred_pending") == 0 })
        #expect(server.metric("switchboard_http_deferred_abandoned_total") == 601)
        #expect(openFileDescriptorCount() == baseline)
    }

    @Test("an unanswered deferred response gets 504 at the timeout; the connection goes on; the late answer is ignored", arguments: backends)
    func timeout(backend: IOBackendKind) throws {
        let box = SlotBox()
        let server = try server(backend, box) { $0.deferredResponseTimeoutMilliseconds = 200 }
        defer { server.stop() }
        let c = try server.client()
        let start = monotonicMilliseconds()
        try c.send(get("/defer/7") + get("/n/behind"))
        let body = "Gateway Timeout: the handler gave no response within deferred_response_timeout_ms\n"
        #expect(try c.readResponse().raw == Array(
            "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
        #expect(monotonicMilliseconds() - start >= 200)
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("behind").utf8))
        #expect(server.metric("switchboard_http_deferred_timeouts_total") == 1)
        #expect(server.metric("switchboard_http_deferred_pending") == 0)
        box[7]!.respond(deferredAnswer(7))
        try c.send(get("/n/next"))
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("next").utf8))
    }

    @Test("beyond max_pending_responses_per_connection: 503 in its turn, then close", arguments: backends)
    func pendingLimit(backend: IOBackendKind) throws {
        let box = SlotBox()
        let server = try server(backend, box) { $0.maxPendingResponsesPerConnection = 4 }
        defer { server.stop() }
        let c = try server.client()
        try c.send((0..<6).map { get("/defer/\($0)") }.joined())
        #expect(waitUntil { box.count == 4 && server.metric("switchboard_http_pending_limit_hits_total") == 1 })
        for i in 0..<4 { box[i]!.respond(deferredAnswer(i)) }
        for i in 0..<4 { #expect(try c.readResponse().raw == Array(expectedDeferredBytes(i).utf8)) }
        let refusal = try c.readResponse()
        #expect(refusal.status == 503 && refusal.header("Connection") == "close")
        #expect(c.isClosedByServer())
        #expect(box.count == 4, "the request after the refusal is never read")
    }

    /// Built-in routes' requests come out of the parser bare (no request built) unless they
    /// have a body or upgrade headers: both kinds are queued behind owed answers, in order,
    /// and count against the pending limit alike.
    @Test("health behind deferred answers, bare and built: queued in order, the pending limit applies to both", arguments: backends)
    func healthBehindDeferred(backend: IOBackendKind) throws {
        let box = SlotBox()
        let server = try server(backend, box) { $0.maxPendingResponsesPerConnection = 4 }
        defer { server.stop() }
        let health = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"
        let c = try server.client()
        try c.send(get("/defer/0") + get("/defer/1") + get("/health") + get("/health", "Connection: upgrade\r\nUpgrade: h2c\r\n")
                   + get("/health") + get("/n/never"))
        #expect(waitUntil { box.count == 2 && server.metric("switchboard_http_pending_limit_hits_total") == 1 })
        for i in 0..<2 { box[i]!.respond(deferredAnswer(i)) }
        for i in 0..<2 { #expect(try c.readResponse().raw == Array(expectedDeferredBytes(i).utf8)) }
        #expect(try c.readResponse().text == health)
        #expect(try c.readResponse().text == health)
        let refusal = try c.readResponse()
        #expect(refusal.status == 503 && refusal.header("Connection") == "close")
        #expect(c.isClosedByServer())
        #expect(server.metric("switchboard_http_requests_total") == 5, "the request after the refusal is never read")
    }

    @Test("shutdown: an answer owed when draining begins still goes out, then the connection closes", arguments: backends)
    func answeredWhileDraining(backend: IOBackendKind) throws {
        let box = SlotBox()
        let server = try server(backend, box)
        let broker = server.broker
        var stopper: OSThread? = nil
        defer { if let stopper { stopper.join() } else { server.stop() } }
        do {
            let c = try server.client()
            try c.send(get("/defer/1"))
            #expect(waitUntil { box.count == 1 })
            stopper = OSThread.spawn(name: "stopper") { broker.shutdown(graceMilliseconds: 5000) }
            #expect(waitUntil { broker.send(SocketID(shard: 0, slot: 0, generation: 0), .text("")) == .refused(.stopped) })
            #expect(box[1]!.respond(deferredAnswer(1)) == .queued)
            let r = try c.readResponse()
            #expect(r.status == 200 && r.bodyText == "d1")
            #expect(c.isClosedByServer())
        }
    }
}
