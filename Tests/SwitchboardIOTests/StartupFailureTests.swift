@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// A start-up that fails halfway must leave the process as it found it: no thread, no
/// descriptor, the port free at once.
///
/// Thread and descriptor counts are per process, and other suites may run in parallel: each
/// check repeats the failing start up to 5 times and passes when one attempt left both counts
/// exactly at their baseline. A real leak shifts every attempt by the same amount.
@Suite("ShardGroup: a failed start releases its threads, descriptors and port", .serialized)
struct StartupFailureTests {
    /// Runs `attempt` (a start that must throw) until one run leaves threads and fds unchanged.
    func expectNoLeak(_ what: String, _ attempt: () -> Void) {
        attempt()  // warm-up: lazily created runtime threads and caches
        var deltas: [(threads: Int, fds: Int)] = []
        for _ in 0..<5 {
            let threads = threadCount()
            let fds = openFileDescriptorCount()
            attempt()
            // A joined thread leaves /proc/self/task shortly after pthread_join returns.
            _ = waitUntil(timeoutMilliseconds: 500) { threadCount() <= threads }
            let d = (threadCount() - threads, openFileDescriptorCount() - fds)
            if d == (0, 0) { return }
            deltas.append(d)
        }
        Issue.record("\(what): threads/fds did not return to baseline: \(deltas)")
    }

    @Test("port in use: the bind error, nothing started", arguments: [IOBackendKind.uring, .epoll])
    func portInUse(backend: IOBackendKind) throws {
        let port = unusedPort()
        let blocker = bindListener(port: port)
        try #require(blocker >= 0)
        defer { close(blocker) }
        expectNoLeak("port in use") {
            let g = ShardGroup(configuration: smallConfiguration(backend, shards: 2), host: "127.0.0.1", port: port) { _ in
                EchoHandler(log: EventLog())
            }
            #expect(throws: IOError.system("listen on 127.0.0.1:\(port)", EADDRINUSE)) { try g.start() }
            #expect(g.shards.isEmpty)
        }
    }

    @Test("a shard's loop set-up refused (io_uring refused): threads joined, listener closed, work refused",
          arguments: [IOBackendKind.uring, .epoll], [0, 2])
    func shardSetUpRefused(backend: IOBackendKind, failingShard: Int) throws {
        let port = unusedPort()
        expectNoLeak("set-up refused on shard \(failingShard)") {
            let ledger = WorkLedger()
            let g = ShardGroup(configuration: smallConfiguration(backend, shards: 3), host: "127.0.0.1", port: port) { _ in
                LastTurnPoster(ledger: ledger, count: 0)
            }
            // Work posted before the threads start: it must run or be refused, never hang.
            g.prepare = { shards in for s in shards { for _ in 0..<10 { ledger.post(to: s) } } }
            g.setUpFaultForTesting = { index in
                index == failingShard ? IOError.system("IORING_REGISTER_ENABLE_RINGS (injected)", EPERM) : nil
            }
            #expect(throws: IOError.unavailable("a shard failed to set up its \(backend.rawValue) loop")) { try g.start() }
            #expect(g.shards.isEmpty)
            #expect(ledger.total == 30)
            // The failing shard never ran its 10; the others may have run theirs before the stop.
            #expect(ledger.refusedQueued.load(ordering: .acquiring) + ledger.refusedAtOnce.load(ordering: .acquiring) >= 10)
            // The port is free at once, even for a bind without SO_REUSEADDR.
            let again = bindListener(port: port)
            #expect(again >= 0, "port \(port) still held after a failed start: errno \(-again)")
            if again >= 0 { close(again) }
        }
    }

    @Test("shutdown after a failed start is harmless")
    func shutdownAfterFailure() throws {
        let g = ShardGroup(configuration: smallConfiguration(.epoll, shards: 2), host: "127.0.0.1", port: 0) { _ in
            EchoHandler(log: EventLog())
        }
        g.setUpFaultForTesting = { _ in IOError.unavailable("injected") }
        #expect(throws: IOError.self) { try g.start() }
        g.shutdown(graceMilliseconds: 0)
        #expect(g.openConnections == 0)
    }
}
