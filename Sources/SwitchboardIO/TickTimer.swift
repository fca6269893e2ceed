import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// A shard's tick as an event: a periodic CLOCK_MONOTONIC timerfd that expires on the grid
/// `Shard.endOfTurn` schedules ticks on (the multiples of `tickMilliseconds` since the clock's
/// zero, the clock of `monotonicMilliseconds`).
///
/// Why: a loop that sleeps with a timeout pays for the timeout on every sleep. The kernel arms
/// an hrtimer for the wait and cancels it when an event ends the wait first, which is nearly
/// always under load (and on epoll it also computes the timeout's slack on every call, asleep
/// or not). With the tick as an event both backends sleep without a timeout: epoll registers
/// `fd`, io_uring keeps a one-shot poll of it in flight (`UringShard.armTick`). Echo at 20,000
/// messages/s over 100 connections, where the shard sleeps between most messages: ~0.55 µs
/// (~3%) less server CPU per message on either backend; at full speed, where the shard seldom
/// sleeps, no difference the runs resolve (RESULTS "2026-12-05 (16:20–16:55 UTC)"). The C++
/// peer's loop (uWebSockets on epoll) waits on a timerfd the same way.
///
/// Expiring exactly on the grid, the timer ends a sleep when a tick is due and not before, so
/// the clock read after that wait (`refreshClock`) is at or past `nextTickMilliseconds` and the
/// turn runs the tick. A turn that is busy past a tick finds the expiry in its next wait, which
/// does not sleep; expiries missed meanwhile are one count (`drain`), not a backlog of events.
///
/// Thread rules: created with the shard (any thread), drained only on the shard's thread,
/// closed by `close()` after that thread exited (`Shard.releaseResources`).
final class TickTimer {
    /// The timerfd: non-blocking, close-on-exec. -1 once closed.
    private(set) var fd: Int32

    /// Starts the timer: first expiry at the next multiple of `tickMilliseconds`, then one
    /// every `tickMilliseconds`.
    init(tickMilliseconds: Int) throws(IOError) {
        precondition(tickMilliseconds >= 1, "a tick of \(tickMilliseconds) ms (IOConfiguration validates 1...1000)")
        let intervalNanoseconds = Int64(tickMilliseconds) * 1_000_000
        let firstNanoseconds = (sb_monotonic_ns() / intervalNanoseconds + 1) * intervalNanoseconds
        let timer = sb_timerfd_periodic(firstNanoseconds, intervalNanoseconds)
        if timer < 0 { throw IOError.system("timerfd_create", -timer) }
        fd = timer
    }

    deinit { close() }

    /// Resets the expiry count (epoll: level-triggered, so an unread expiry would end every
    /// wait at once until the next one). Returns the expiries since the last drain, 0 if none.
    @discardableResult
    func drain() -> Int64 {
        assert(fd >= 0, "a drain of a closed tick timer")
        return sb_timerfd_drain(fd)
    }

    /// Closes the descriptor (an io_uring poll still in flight holds its own reference until
    /// the ring is torn down). Idempotent.
    func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }
}
