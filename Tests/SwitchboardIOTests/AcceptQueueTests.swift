@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// Holds the shard thread in its first `connectionOpened` until the test lets it go, so the
/// acceptor's queue to it fills; counts the connections opened.
final class StallingOpener: ShardEventHandler, @unchecked Sendable {
    let opened = ManagedAtomic<Int>(0)
    let stalled = ManagedAtomic<Bool>(false)
    let release = ManagedAtomic<Bool>(false)
    func connectionOpened(_ id: SocketID) {
        if opened.loadThenWrappingIncrement(ordering: .acquiringAndReleasing) == 0 {
            stalled.store(true, ordering: .releasing)
            // Bounded, so a broken test cannot hang the suite.
            for _ in 0..<20_000 where !release.load(ordering: .acquiring) { usleep(1000) }
        }
    }
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {}
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
    func connectionClosed(_ id: SocketID) {}
}

/// epoll: the acceptor hands sockets over through the shard's own small queue
/// (`Shard.acceptedSockets`, `listenBacklog` cells), not the work inbox (issue 16 item 2: each
/// inbox cell a socket passed through became 40 bytes of resident memory). A full queue makes
/// the acceptor wait, with the kernel's backlog holding the next connections: none is closed.
@Suite("epoll accept queue", .serialized)
struct AcceptQueueTests {
    @Test("a full accept queue makes the acceptor wait; every socket is opened, none closed, the inbox untouched")
    func fullQueueWaits() throws {
        raiseFileLimit()
        var c = smallConfiguration(.epoll, shards: 1)
        c.listenBacklog = 64  // the queue's capacity, and the kernel's backlog
        let handler = StallingOpener()
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in handler }
        try g.start()
        defer { g.shutdown(graceMilliseconds: 100) }
        let shard = g.shards[0]
        let queue = try #require(shard.acceptedSockets)
        #expect(queue.capacity == 64)
        let inboxBefore = shard.inbox.enqueuePosition.load(ordering: .relaxed)

        // 1 stalls the shard, 64 fill the queue, 1 waits in the acceptor's hand, 30 wait in
        // the kernel's backlog (65 at most).
        let total = 96
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        fds.append(try connectLoopback(port: g.port))
        #expect(waitUntil { handler.stalled.load(ordering: .acquiring) })
        for _ in 1..<total { fds.append(try connectLoopback(port: g.port)) }
        // The acceptor filled the queue and holds one more socket (this is the case under test):
        // 1 + 64 + 1 accepted, and no more while the shard stalls; none closed.
        let metrics = try #require(g.acceptorMetrics)
        #expect(waitUntil { metrics.accepted.value == 2 + queue.capacity })
        #expect(queue.approximateCount == queue.capacity)
        #expect(metrics.handoffFailures.value == 0)

        handler.release.store(true, ordering: .releasing)
        #expect(waitUntil(timeoutMilliseconds: 10_000) { handler.opened.load(ordering: .acquiring) == total })
        #expect(handler.opened.load(ordering: .acquiring) == total)
        #expect(metrics.handoffFailures.value == 0)
        #expect(metrics.accepted.value == total)
        #expect(shard.metrics.connectionsRejected.value == 0)
        #expect(shard.metrics.connectionsOpen.value == total)
        // Waiting is not a refusal of work: `inboxFull` stays 0, and no socket used the inbox.
        #expect(shard.metrics.inboxFull.value == 0)
        #expect(shard.inbox.enqueuePosition.load(ordering: .relaxed) == inboxBefore)
    }

    @Test("io_uring shards have no accept queue (sockets arrive by MSG_RING)")
    func uringHasNoQueue() throws {
        let g = ShardGroup(configuration: smallConfiguration(.uring, shards: 1), host: "127.0.0.1", port: 0) { _ in StallingOpener() }
        try g.start()
        defer { g.shutdown(graceMilliseconds: 100) }
        #expect(g.shards[0].acceptedSockets == nil)
    }
}

