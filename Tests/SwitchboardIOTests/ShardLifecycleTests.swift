@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// Counts how each piece of posted work ended: ran, refused at once, or refused later.
final class WorkLedger: Sendable {
    let ran = ManagedAtomic<Int>(0)
    let refusedAtOnce = ManagedAtomic<Int>(0)
    let refusedQueued = ManagedAtomic<Int>(0)
    let refusedFull = ManagedAtomic<Int>(0)
    var total: Int {
        ran.load(ordering: .acquiring) + refusedAtOnce.load(ordering: .acquiring)
            + refusedQueued.load(ordering: .acquiring) + refusedFull.load(ordering: .acquiring)
    }

    /// Posts one piece of work that records its fate here.
    func post(to shard: Shard) {
        let ledger = self
        shard.execute({ _ in ledger.ran.wrappingIncrement(ordering: .releasing) }, orElse: { why in
            switch why {
            case .inboxFull: ledger.refusedFull.wrappingIncrement(ordering: .releasing)
            // Refused on the shard thread: it was queued and the shard stopped first.
            case .stopped where shard.isCurrent: ledger.refusedQueued.wrappingIncrement(ordering: .releasing)
            case .stopped: ledger.refusedAtOnce.wrappingIncrement(ordering: .releasing)
            }
        })
    }
}

/// On its last turn (draining, no connections left) posts work to its own shard: that work
/// is in the inbox when the loop ends, so the shard must refuse it rather than drop it.
final class LastTurnPoster: ShardEventHandler, @unchecked Sendable {
    let ledger: WorkLedger
    let count: Int
    private var posted = false
    let seen = ManagedAtomic<Int>(0)
    init(ledger: WorkLedger, count: Int) { self.ledger = ledger; self.count = count }
    func shardStarted(_ shard: Shard) { seen.store(Int(shard.lifecycle.rawValue), ordering: .releasing) }
    func connectionOpened(_ id: SocketID) {}
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {}
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
    func connectionClosed(_ id: SocketID) {}
    func loopTurn(_ shard: Shard) {
        guard shard.isDraining, !posted else { return }
        posted = true
        for _ in 0..<count { ledger.post(to: shard) }
    }
}

func threadCount() -> Int {
    guard let dir = opendir("/proc/self/task") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while readdir(dir) != nil { count += 1 }
    return count - 2
}

/// A port no socket holds right now (bound and released at once, no connection: no TIME_WAIT).
func unusedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    a.sin_port = 0
    _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: a.sin_port))
}

/// Binds and listens on 127.0.0.1:`port` WITHOUT SO_REUSEADDR (stricter than the server):
/// the fd, or -errno.
func bindListener(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    a.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 || listen(fd, 16) != 0 {
        let e = errno
        close(fd)
        return -e
    }
    return fd
}

func smallConfiguration(_ backend: IOBackendKind, shards: Int) -> IOConfiguration {
    var c = IOConfiguration()
    c.backend = backend
    c.shardCount = shards
    c.recvBufferCount = 64
    c.recvBufferBytes = 4096
    c.tickMilliseconds = 10
    c.maxConnectionsPerShard = 1024
    return c
}

@Suite("Shard lifecycle: stopped shards refuse work, nothing posted is lost", .serialized)
struct ShardLifecycleTests {
    @Test("lifecycle moves created -> running -> draining -> stopped", arguments: [IOBackendKind.uring, .epoll])
    func lifecycleStates(backend: IOBackendKind) throws {
        let ledger = WorkLedger()
        let handler = LastTurnPoster(ledger: ledger, count: 0)
        let g = ShardGroup(configuration: smallConfiguration(backend, shards: 1), host: "127.0.0.1", port: 0) { _ in handler }
        var seenAtPrepare: ShardLifecycle?
        let box = ResultBox<ShardLifecycle>()
        g.prepare = { shards in box.set(shards[0].lifecycle) }
        try g.start()
        seenAtPrepare = box.value
        #expect(seenAtPrepare == .created)
        #expect(handler.seen.load(ordering: .acquiring) == Int(ShardLifecycle.running.rawValue))
        #expect(waitUntil { g.shards[0].lifecycle == .running })
        // Hold the shard in draining with one open connection until the grace period ends.
        let c = try TestClient(port: g.port)
        #expect(waitUntil { g.shards[0].openConnections == 1 })
        g.beginShutdown(graceMilliseconds: 300)
        #expect(waitUntil { g.shards[0].lifecycle == .draining })
        g.wait()
        #expect(g.shards[0].lifecycle == .stopped)
        _ = c
    }

    @Test("a stopped shard refuses work at once, and says so", arguments: [IOBackendKind.uring, .epoll])
    func refusedAfterStop(backend: IOBackendKind) throws {
        let ledger = WorkLedger()
        let g = ShardGroup(configuration: smallConfiguration(backend, shards: 2), host: "127.0.0.1", port: 0) { _ in
            LastTurnPoster(ledger: ledger, count: 0)
        }
        try g.start()
        g.shutdown(graceMilliseconds: 100)
        for shard in g.shards {
            #expect(shard.lifecycle == .stopped)
            for _ in 0..<10 { ledger.post(to: shard) }
            #expect(shard.execute { _ in } == false)
            #expect(shard.post(.drain(deadlineMilliseconds: 0)) == .refused(.stopped))
        }
        #expect(ledger.refusedAtOnce.load(ordering: .acquiring) == 20)
        #expect(ledger.ran.load(ordering: .acquiring) == 0)
    }

    @Test("work queued when the loop ends is refused on the shard thread, not dropped", arguments: [IOBackendKind.uring, .epoll])
    func queuedWorkRefusedAtStop(backend: IOBackendKind) throws {
        let ledger = WorkLedger()
        let g = ShardGroup(configuration: smallConfiguration(backend, shards: 1), host: "127.0.0.1", port: 0) { _ in
            LastTurnPoster(ledger: ledger, count: 1000)
        }
        try g.start()
        g.shutdown(graceMilliseconds: 100)
        #expect(ledger.refusedQueued.load(ordering: .acquiring) == 1000)
        #expect(ledger.total == 1000)
    }

    @Test("posts racing shutdown: every piece of work runs or is refused, exactly once", arguments: [IOBackendKind.uring, .epoll])
    func postsRacingShutdown(backend: IOBackendKind) throws {
        let ledger = WorkLedger()
        var c = smallConfiguration(backend, shards: 2)
        c.inboxCapacity = 256  // small, so inboxFull refusals happen too
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in LastTurnPoster(ledger: ledger, count: 0) }
        try g.start()
        let attempts = ManagedAtomic<Int>(0)
        let started = ManagedAtomic<Int>(0)
        // Each poster keeps going until both shards have stopped, then posts 100 more.
        let posters = (0..<3).map { t in
            OSThread.spawn(name: "racer-\(t)") {
                started.wrappingIncrement(ordering: .releasing)
                var i = 0
                var after = 0
                while after < 100 {
                    if g.shards.allSatisfy({ $0.lifecycle == .stopped }) { after += 1 }
                    ledger.post(to: g.shards[i & 1])
                    attempts.wrappingIncrement(ordering: .relaxed)
                    i += 1
                    if i & 63 == 0 { sched_yield() }
                }
            }!
        }
        #expect(waitUntil { started.load(ordering: .acquiring) == 3 })
        // Let some work run before the stop, then stop while the posters keep going.
        #expect(waitUntil { ledger.ran.load(ordering: .acquiring) > 1000 })
        g.shutdown(graceMilliseconds: 0)
        for p in posters { p.join() }
        let posted = attempts.load(ordering: .acquiring)
        // Bounded wait: a piece of work that is neither run nor refused fails here.
        #expect(waitUntil(timeoutMilliseconds: 10_000) { ledger.total == posted })
        #expect(ledger.total == posted)
        #expect(ledger.refusedAtOnce.load(ordering: .acquiring) > 0)
    }
}
