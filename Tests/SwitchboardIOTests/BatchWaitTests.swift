import CLiburing
import Glibc
@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing

/// io_uring batch waits (`IOConfiguration.batchWaitMicroseconds`, issue 16 item 3): what the
/// kernel does with the shim's wait, on a real ring, and that a shard that batches its waits
/// still echoes every byte, batching only at its connection threshold.
@Suite("io_uring batch waits", .serialized)
struct BatchWaitTests {
    /// Whether the running kernel is at least `major.minor` (min_wait came in 6.12).
    static func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return (parts[0], parts[1]) >= (major, minor)
    }

    /// Completions waiting in `ring`, taken.
    static func drain(_ ring: UnsafeMutablePointer<io_uring>) -> Int {
        var data = [UInt64](repeating: 0, count: 8), res = [Int32](repeating: 0, count: 8), flags = [UInt32](repeating: 0, count: 8)
        return Int(sb_drain_cqes(ring, &data, &res, &flags, 8))
    }

    @Test("the kernel's batch wait: the window ends a wait short of its completions, enough completions end it at once, none waits for the timeout")
    func kernelSemantics() throws {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        var applied: UInt32 = 0
        try #require(sb_ring_init(ring, 8, 0, &applied) == 0)
        defer { io_uring_queue_exit(ring); ring.deallocate() }
        let supported = sb_batch_wait_supported(ring) != 0
        // This machine kind runs 6.18; on an older kernel the shards wait as before (below).
        #expect(supported == Self.kernelAtLeast(6, 12), "IORING_FEAT_MIN_TIMEOUT and the kernel version disagree")
        guard supported else { return }

        // One completion of the two asked for: the 100 ms window ends the wait, not the 5 s timeout.
        sb_prep_nop(sb_get_sqe(ring), 1)
        var start = ContinuousClock.now
        #expect(sb_submit_and_wait_batch(ring, 2, 5_000_000_000, 100_000, 0) >= 0)
        var elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(90) && elapsed < .seconds(2), "returned after \(elapsed)")
        #expect(Self.drain(ring) == 1)

        // Both completions asked for: no wait for the 2 s window.
        sb_prep_nop(sb_get_sqe(ring), 2)
        sb_prep_nop(sb_get_sqe(ring), 3)
        start = ContinuousClock.now
        #expect(sb_submit_and_wait_batch(ring, 2, 5_000_000_000, 2_000_000, 0) >= 0)
        elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(1), "returned after \(elapsed)")
        #expect(Self.drain(ring) == 2)

        // Nothing completes: past the 20 ms window the wait goes on to the 300 ms timeout.
        start = ContinuousClock.now
        let rc = sb_submit_and_wait_batch(ring, 1, 300_000_000, 20_000, 0)
        elapsed = ContinuousClock.now - start
        #expect(rc == -ETIME)
        #expect(elapsed >= .milliseconds(280), "returned after \(elapsed)")
        #expect(Self.drain(ring) == 0)
    }

    /// A shard with an echo handler over `connections` sockets, batch waits from
    /// `minimumConnections` open, each socket sending `rounds` messages one after another.
    /// Returns the shard's batch waits, and those the kernel refused (`refused`: each batch wait
    /// is made malformed, `IOConfiguration.batchWaitRefusedForTesting`).
    static func echo(_ backend: IOBackendKind, connections: Int, minimumConnections: Int, rounds: Int,
                     refused: Bool = false, waitThroughPoll: Bool = false) throws -> (waits: Int, refused: Int) {
        raiseFileLimit()
        var c = smallConfiguration(backend, shards: 1)
        c.waitThroughPoll = waitThroughPoll
        // Polling: the longest sleep, so a wake that never came would cost up to a second a round.
        if waitThroughPoll { c.tickMilliseconds = 1000 }
        c.batchWaitMicroseconds = 2_000
        c.batchWaitCompletions = 64
        c.batchWaitMinimumConnections = minimumConnections
        c.batchWaitRefusedForTesting = refused
        let log = EventLog()
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
        try g.start()
        defer { g.shutdown(graceMilliseconds: 500) }
        let clients = try (0..<connections).map { _ in try TestClient(port: g.port) }
        #expect(waitUntil { g.shards[0].metrics.connectionsOpen.value == connections })
        for round in 0..<rounds {
            // Every socket sends before any reply is read: the shard gets many at once.
            for (i, client) in clients.enumerated() { try client.send("c\(i)r\(round);") }
            for (i, client) in clients.enumerated() {
                let expected = Array("c\(i)r\(round);".utf8)
                try client.fill(atLeast: expected.count)
                #expect(Array(client.buffered.prefix(expected.count)) == expected, "connection \(i), round \(round)")
                client.removeBuffered(expected.count)
            }
        }
        #expect(log.refusedSends == 0)
        return (g.shards[0].metrics.batchWaits.value, g.shards[0].metrics.batchWaitsRefused.value)
    }

    static var batchWaitAvailable: Bool {
        get throws {
            let probe = try UringShard(index: 0, configuration: smallConfiguration(.uring, shards: 1))
            defer { probe.releaseResources() }
            return probe.batchWaitAvailable
        }
    }

    @Test("every byte echoed with batch waits on; a shard batches at its connection threshold and not below it")
    func echoesAndThreshold() throws {
        let available = try Self.batchWaitAvailable
        #expect(available == Self.kernelAtLeast(6, 12))
        let batched = try Self.echo(.uring, connections: 40, minimumConnections: 40, rounds: 30)
        #expect(available ? batched.waits > 0 : batched.waits == 0, "\(batched.waits) batch waits")
        #expect(batched.refused == 0)
        #expect(try Self.echo(.uring, connections: 40, minimumConnections: 41, rounds: 5).waits == 0)
        // epoll has no batch wait: the option is io_uring's.
        #expect(try Self.echo(.epoll, connections: 40, minimumConnections: 1, rounds: 5).waits == 0)
    }

    @Test("a batch wait the kernel refuses: counted once, then plain waits, and every byte still echoed")
    func refusedBatchWait() throws {
        let available = try Self.batchWaitAvailable
        try #require(available == Self.kernelAtLeast(6, 12))
        // The kernel refuses each batch wait here (an argument one byte short: -EINVAL). A
        // refusal comes back only from a call that submitted nothing (with submissions the call
        // returns their count, and the shard goes on), so the first refusal may follow a few
        // batch waits; after it the shard asks for none.
        let result = try Self.echo(.uring, connections: 40, minimumConnections: 40, rounds: 30, refused: true)
        if available {
            #expect(result.refused == 1, "\(result.refused) refusals")
            #expect(result.waits >= 1, "\(result.waits) batch waits")
        } else {
            // No min_wait: the shard never asks, so nothing is refused.
            #expect(result == (0, 0))
        }
    }

    @Test("waiting in poll(2) (valgrind-echo's wait): the shard still wakes for new connections and for every round's bytes, and echoes them all")
    func waitThroughPoll() throws {
        // Each round finds the shard asleep in poll. A completion does not wake poll on this ring
        // (its work is deferred to io_uring_enter), so the shard sleeps at most 1 ms; sleeping
        // for the wait's budget, the 1 s tick, left each round's bytes unread until then: ~0.5 s
        // a round, 41 s for the 40 in the first version.
        let start = ContinuousClock.now
        let result = try Self.echo(.uring, connections: 8, minimumConnections: 1, rounds: 40, waitThroughPoll: true)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(8), "\(elapsed): the shard slept through its completions")
        #expect(result.waits == 0, "the poll wait replaces the batch wait")
    }

    @Test("the batch wait's options are validated")
    func validation() {
        var c = IOConfiguration()
        #expect(c.validate() == nil)
        #expect(c.batchWaitMicroseconds == 50 && c.batchWaitCompletions == 32 && c.batchWaitMinimumConnections == 512)
        for (micros, completions, minimum, problem) in [
            (-1, 32, 512, "batchWaitMicroseconds must be 0...10000"),
            (10_001, 32, 512, "batchWaitMicroseconds must be 0...10000"),
            (50, 0, 512, "batchWaitCompletions must be 1...ringEntries"),
            (50, c.ringEntries + 1, 512, "batchWaitCompletions must be 1...ringEntries"),
            (50, 32, 0, "batchWaitMinimumConnections must be >= 1"),
        ] {
            c = IOConfiguration()
            c.batchWaitMicroseconds = micros
            c.batchWaitCompletions = completions
            c.batchWaitMinimumConnections = minimum
            #expect(c.validate() == problem)
        }
        c = IOConfiguration()
        c.batchWaitMicroseconds = 0  // off
        #expect(c.validate() == nil)
    }
}
