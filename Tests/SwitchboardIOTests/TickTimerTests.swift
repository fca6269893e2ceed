@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Records the time of each tick, and the shard's loop turns at each (shard thread; read from
/// the test's).
final class TickRecorder: ShardEventHandler, @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var times: [Int64] = []
    private var turns: [Int] = []
    init() { pthread_mutex_init(&lock, nil) }
    func connectionOpened(_ id: SocketID) {}
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {}
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
    func connectionClosed(_ id: SocketID) {}
    func tick(_ shard: Shard, nowMilliseconds: Int64) {
        let turn = shard.metrics.loopTurns.value
        pthread_mutex_lock(&lock)
        times.append(nowMilliseconds)
        turns.append(turn)
        pthread_mutex_unlock(&lock)
    }
    /// The ticks so far: their `nowMilliseconds`, and `loopTurns` when each ran.
    var ticks: (times: [Int64], turns: [Int]) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return (times, turns)
    }
}

/// Waits up to `timeoutMilliseconds` for `fd` to be readable: true if it became so.
private func readable(_ fd: Int32, timeoutMilliseconds: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&p, 1, timeoutMilliseconds) == 1 && p.revents & Int16(POLLIN) != 0
}

/// A shard sleeps without a timeout and wakes on its tick timer (`TickTimer`): the timer must
/// expire on the tick grid, never early, and the shard must keep ticking while idle without
/// spinning (an expiry left unread would end every epoll wait at once; a failing io_uring read
/// would complete every turn).
@Suite("TickTimer: the tick as an event, both backends", .serialized)
struct TickTimerTests {
    @Test("the timer expires on the tick grid, not before; a drain resets it; close is idempotent")
    func expiresOnTheGrid() throws {
        // Long enough that a test thread descheduled on a busy machine does not see the next
        // expiry between a drain and the checks after it.
        let tick: Int64 = 200
        let created = monotonicMilliseconds()
        let timer = try TickTimer(tickMilliseconds: Int(tick))
        #expect(timer.fd >= 0)
        // The first expiry is the first grid point after `created`, not `created` itself.
        var lastSlot = created / tick
        for expiry in 0..<3 {
            #expect(readable(timer.fd, timeoutMilliseconds: 2_000), "expiry \(expiry) did not come")
            let now = monotonicMilliseconds()
            // Each expiry is at a grid point past the previous one (the clock is the same).
            #expect(now / tick > lastSlot, "expiry \(expiry) at \(now) ms, in grid slot \(now / tick), not past \(lastSlot)")
            lastSlot = now / tick
            #expect(timer.drain() >= 1)
            #expect(timer.drain() == 0, "a drain did not reset the count")
            #expect(!readable(timer.fd, timeoutMilliseconds: 0), "still readable after a drain")
        }
        timer.close()
        #expect(timer.fd == -1)
        timer.close()
        #expect(timer.fd == -1)
    }

    @Test("an idle shard ticks every tick, in a new grid slot each time, about one loop turn per tick", arguments: [IOBackendKind.uring, .epoll])
    func idleShardTicks(backend: IOBackendKind) throws {
        let tick = 10
        let recorder = TickRecorder()
        var c = smallConfiguration(backend, shards: 1)
        c.tickMilliseconds = tick
        let group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in recorder }
        try group.start()
        defer { group.shutdown(graceMilliseconds: 500) }
        let wanted = 25
        #expect(waitUntil(timeoutMilliseconds: 10_000) { recorder.ticks.times.count >= wanted + 1 },
                "\(recorder.ticks.times.count) ticks, wanted \(wanted + 1)")
        let (times, turns) = recorder.ticks
        guard times.count > wanted else { return }
        // The first tick runs in the first turn, off the grid; the rest are due on it.
        for i in 2...wanted {
            #expect(times[i] / Int64(tick) > times[i - 1] / Int64(tick),
                    "ticks \(i - 1) and \(i) at \(times[i - 1]) and \(times[i]) ms: the same grid slot")
        }
        // Nothing else wakes an idle shard: about one turn per tick (a turn may end a sleep
        // early on a spurious wake-up). A shard that spun would make thousands.
        let turnsPerTick = Double(turns[wanted] - turns[1]) / Double(wanted - 1)
        #expect(turnsPerTick >= 0.9 && turnsPerTick <= 2.0, "\(turnsPerTick) loop turns per tick")
    }
}
