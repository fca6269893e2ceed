@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// Echoes bytes, remembers ids, and counts lifecycle events, for the I/O layer's own tests.
///
/// It keeps to the send queue's limit as a protocol layer must: a socket with more than
/// `pauseAtQueuedBytes` unsent stops being read until a tick finds it drained below
/// `resumeAtQueuedBytes` (without this, a client that sends faster than it reads had echoes
/// refused as over the limit and dropped: epoll's 256 KiB reads filled the 4 MiB queue in the
/// 8 MiB echo). A refused echo is logged (`EventLog.refusedSends`).
final class EchoHandler: ShardEventHandler, @unchecked Sendable {
    let log: EventLog
    weak var shard: Shard?
    /// Sockets whose reading this handler paused (shard thread only).
    private var paused: [SocketID] = []
    static let pauseAtQueuedBytes = 1 << 20
    static let resumeAtQueuedBytes = 256 << 10
    init(log: EventLog) { self.log = log }
    func shardStarted(_ shard: Shard) { self.shard = shard }
    func connectionOpened(_ id: SocketID) { log.opened(id) }
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        guard let shard else { return }
        if bytes.count == 1 && bytes.first == UInt8(ascii: "Q") {
            shard.close(id, mode: .afterFlush)
            return
        }
        if shard.send(id, OutboundBytes(bytes)) == .overLimit { log.refusedSend() }
        if shard.queuedBytes(id) > Self.pauseAtQueuedBytes && !paused.contains(id) {
            shard.pauseReading(id)
            paused.append(id)
        }
    }
    func tick(_ shard: Shard, nowMilliseconds: Int64) {
        paused.removeAll { id in
            guard shard.isOpen(id) else { return true }
            guard shard.queuedBytes(id) < Self.resumeAtQueuedBytes else { return false }
            shard.resumeReading(id)
            return true
        }
    }
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) { shard?.close(id, mode: .immediately) }
    func connectionClosed(_ id: SocketID) { log.closed(id) }
}

final class EventLog: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var openedIDs: [SocketID] = []
    private var closedIDs: [SocketID] = []
    private var refused = 0
    init() { pthread_mutex_init(&lock, nil) }
    func refusedSend() { pthread_mutex_lock(&lock); refused += 1; pthread_mutex_unlock(&lock) }
    /// Echoes the shard refused as over the send queue's limit.
    var refusedSends: Int { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return refused }
    func opened(_ id: SocketID) { pthread_mutex_lock(&lock); openedIDs.append(id); pthread_mutex_unlock(&lock) }
    func closed(_ id: SocketID) { pthread_mutex_lock(&lock); closedIDs.append(id); pthread_mutex_unlock(&lock) }
    var opened: [SocketID] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return openedIDs }
    var closed: [SocketID] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return closedIDs }
}

func startEcho(_ backend: IOBackendKind, shards: Int = 1, log: EventLog) throws -> ShardGroup {
    raiseFileLimit()
    var c = IOConfiguration()
    c.backend = backend
    c.shardCount = shards
    c.recvBufferCount = 64
    c.recvBufferBytes = 4096
    c.tickMilliseconds = 10
    let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
    try g.start()
    return g
}

/// Runs `body` on the shard's thread and waits for its result.
func onShard<T: Sendable>(_ shard: Shard, _ body: @escaping @Sendable (Shard) -> T) -> T? {
    let box = ResultBox<T>()
    shard.execute { s in box.set(body(s)) }
    _ = waitUntil { box.value != nil }
    return box.value
}

final class ResultBox<T>: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var stored: T?
    init() { pthread_mutex_init(&lock, nil) }
    func set(_ v: T) { pthread_mutex_lock(&lock); stored = v; pthread_mutex_unlock(&lock) }
    var value: T? { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return stored }
}

@Suite("ShardGroup: acceptor, shards, both backends", .serialized)
struct ShardGroupTests {
    @Test("echo: small and large transfers are byte-exact", arguments: [IOBackendKind.uring, .epoll])
    func echo(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try startEcho(backend, shards: 2, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        #expect(g.backend == backend)
        let c = try TestClient(port: g.port)
        try c.send("ping")
        try c.fill(atLeast: 4)
        #expect(c.buffered == Array("ping".utf8))
        // 8 MiB of patterned data: exercises buffer-ring recycling, partial and vectored sends.
        var big = [UInt8](repeating: 0, count: 8 << 20)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11) }
        let sender = OSThread.spawn(name: "sender") { [big] in try? c.send(big) }!
        var received: [UInt8] = []
        c.takeBuffered()
        while received.count < big.count {
            guard try c.fill() else { Issue.record("server closed after \(received.count) bytes"); break }
            received += c.takeBuffered()
        }
        sender.join()
        #expect(received == big)
        #expect(log.refusedSends == 0)
    }

    @Test("a stale id never reaches the slot's next tenant", arguments: [IOBackendKind.uring, .epoll])
    func staleID(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try startEcho(backend, shards: 1, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        var first: TestClient? = try TestClient(port: g.port)
        #expect(waitUntil { log.opened.count == 1 })
        let oldID = log.opened[0]
        first = nil
        #expect(waitUntil { log.closed.count == 1 })
        #expect(log.closed == [oldID])
        let second = try TestClient(port: g.port, receiveTimeoutMilliseconds: 300)
        #expect(waitUntil { log.opened.count == 2 })
        let newID = log.opened[1]
        #expect(newID.slot == oldID.slot)            // the slot was reused...
        #expect(newID.generation != oldID.generation) // ...under a new generation
        let results = onShard(shard) { s in
            [s.send(oldID, OutboundBytes(Array("stale".utf8))), s.send(newID, OutboundBytes(Array("fresh".utf8)))]
        }
        #expect(results == [.notOpen, .queued])
        try second.fill(atLeast: 5)
        #expect(second.buffered == Array("fresh".utf8))
        #expect(throws: TestClient.Failure.self) { try second.fill() }  // nothing else arrives
        _ = first
    }

    @Test("close after flush sends what is queued, then FIN; handler told exactly once", arguments: [IOBackendKind.uring, .epoll])
    func closeAfterFlush(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try startEcho(backend, shards: 1, log: log)
        var stopped = false
        defer { if !stopped { g.shutdown(graceMilliseconds: 500) } }
        let c = try TestClient(port: g.port)
        try c.send("abc")
        try c.fill(atLeast: 3)
        try c.send("Q")
        #expect(c.isClosedByServer())
        #expect(c.buffered == Array("abc".utf8))
        #expect(waitUntil { log.closed.count == 1 })
        #expect(g.shards[0].metrics.connectionsOpen.value == 0)
        // "Exactly once": after shutdown has joined the shard thread no event can still come,
        // so the count is final (no fixed sleep hoping a duplicate would have shown up by then).
        g.shutdown(graceMilliseconds: 500)
        stopped = true
        #expect(log.closed.count == 1)
    }

    @Test("connections spread over shards, least loaded first", arguments: [IOBackendKind.uring, .epoll])
    func placement(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try startEcho(backend, shards: 2, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        var clients: [TestClient] = []
        // One at a time, so the open log's order is the clients' order.
        for i in 0..<10 {
            clients.append(try TestClient(port: g.port))
            #expect(waitUntil { log.opened.count == i + 1 })
        }
        #expect(Set(log.opened.map(\.shard)) == [0, 1])
        #expect(log.opened.filter { $0.shard == 0 }.count == 5)
        // Close the five on shard 0: the next five all go to shard 0.
        let onZero = log.opened.enumerated().filter { $0.element.shard == 0 }.map(\.offset)
        for i in onZero.reversed() { clients.remove(at: i) }
        #expect(waitUntil { log.closed.count == 5 })
        for _ in 0..<5 { clients.append(try TestClient(port: g.port)) }
        #expect(waitUntil { log.opened.count == 15 })
        #expect(log.opened[10...].allSatisfy { $0.shard == 0 })
    }

    @Test("work posted from many threads runs on the shard, none lost", arguments: [IOBackendKind.uring, .epoll])
    func crossThreadTasks(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try startEcho(backend, shards: 2, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let counters = [ManagedAtomic<Int>(0), ManagedAtomic<Int>(0)]
        let perThread = 20_000
        let threads = (0..<4).map { t in
            OSThread.spawn(name: "poster-\(t)") {
                for i in 0..<perThread {
                    let shard = g.shards[i & 1]
                    while !shard.execute({ s in counters[s.index].wrappingIncrement(ordering: .relaxed) }) { sched_yield() }
                }
            }!
        }
        for t in threads { t.join() }
        #expect(waitUntil { counters[0].load(ordering: .relaxed) + counters[1].load(ordering: .relaxed) == 4 * perThread })
        #expect(counters[0].load(ordering: .relaxed) == 2 * perThread)
    }
}

extension TestClient {
    @discardableResult
    func takeBuffered() -> [UInt8] {
        let b = buffered
        clearBuffer()
        return b
    }
}
