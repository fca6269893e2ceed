import Foundation
import Synchronization

/// Counts deinits of `Tracked` objects, so tests can prove queues neither leak nor
/// over-release class-reference elements. One per test: tests run in parallel.
final class DeinitTracker: Sendable {
    let count = Atomic<Int>(0)
    var deinits: Int { count.load(ordering: .acquiring) }
}

final class Tracked: Sendable {
    let value: Int
    let tracker: DeinitTracker
    init(_ value: Int, _ tracker: DeinitTracker) {
        self.value = value
        self.tracker = tracker
    }
    deinit {
        tracker.count.add(1, ordering: .releasing)
    }
}

/// Mutable state handed to a thread and read back after `runThreads` returns; the
/// join (DispatchGroup wait) is the happens-before edge that makes this safe.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// How many items a two-thread stress test's producer made, for its consumer to wait for.
/// The producer stops at its count, or early when its time budget runs out: on a loaded
/// machine two threads that hand over through a ring each wait whole scheduler slices for the
/// other (beside two busy processes on the 2 cores, a capacity-2 ring moved ~500 items a
/// second, and a fixed count of 200,000 turned a correct ring into a timed-out test). What was
/// produced is checked exactly (all of it received, in order, nothing left over), and the
/// test asks for at least `minimum` items, so a ring that stalls still fails.
final class Production: Sendable {
    private let total = Atomic<Int>(-1)
    private let budgetEnd: ContinuousClock.Instant
    /// The fewest items a run must move to count as a stress run at all.
    let minimum: Int

    init(budgetSeconds: Int, minimum: Int) {
        budgetEnd = ContinuousClock.now.advanced(by: .seconds(budgetSeconds))
        self.minimum = minimum
    }

    /// Producer: whether to make item `index` (the clock is read every 1,024 items).
    func mayProduce(_ index: Int) -> Bool {
        index & 1023 != 0 || ContinuousClock.now < budgetEnd
    }

    /// Producer: all `count` items it made are pushed. Releasing: they happen before a
    /// consumer's acquiring load that sees the total.
    func finish(_ count: Int) { total.store(count, ordering: .releasing) }

    /// Consumer: the total once the producer finished, nil before. Check it only after a
    /// pop found nothing, and stop only once that many were received: the last item may be
    /// pushed between the failed pop and this load.
    var produced: Int? {
        let value = total.load(ordering: .acquiring)
        return value < 0 ? nil : value
    }
}

/// Wall-clock limit for spin loops, so a queue bug shows up as a failed test rather
/// than a hung test run.
struct SpinDeadline: Sendable {
    let end: ContinuousClock.Instant
    init(seconds: Int) { end = ContinuousClock.now.advanced(by: .seconds(seconds)) }

    /// Call once per failed attempt; yields the CPU (there are only 2 cores and the
    /// other side needs one) and returns false once the deadline has passed.
    /// Checks the clock only every 256 calls to keep the spin cheap.
    func wait(_ spins: inout Int) -> Bool {
        spins &+= 1
        sched_yield()
        if spins & 255 == 0 { return ContinuousClock.now < end }
        return true
    }
}

/// Runs each body on its own real OS thread and waits for all of them.
/// Returns false if they did not all finish within `timeoutSeconds`.
func runThreads(_ bodies: [@Sendable () -> Void], timeoutSeconds: Int = 30) -> Bool {
    let group = DispatchGroup()
    for body in bodies {
        group.enter()
        let thread = Thread {
            body()
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    return group.wait(timeout: .now() + .seconds(timeoutSeconds)) == .success
}

/// Elapsed seconds of `body`, for informal throughput notes in test output.
func measureSeconds(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}
