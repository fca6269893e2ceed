/// Deadlines of one fixed duration, kept in arrival order.
///
/// Every entry of a list gets the same duration, so insertion order is deadline order: arming,
/// re-arming and cancelling are O(1) and expiry pops from the front. A shard keeps one list per
/// kind of timer (idle, request, linger) instead of a general timer heap.
///
/// Memory (issue 16 item 2): the arrays are indexed by slot and their pages become resident as
/// slots are used, so every used slot costs 13 bytes per list it was ever armed in (prev, next,
/// deadline) plus 1 (member) per list.
///
/// Granularity (issue 16 item 3): a list may round its deadlines up to a multiple of
/// `granularityMilliseconds` (the idle list: the shard's tick). Re-arming a timer whose rounded
/// deadline did not change then leaves it where it is: a connection that receives many times
/// within one tick re-links its idle timer once per tick instead of once per read (unlink and
/// relink were ~60 instructions per echoed WebSocket message). No byte per slot is added, the
/// list stays in deadline order, and no timer fires early; with ticks on the same grid
/// (`Shard.endOfTurn`), one fires at the first tick at or after its exact deadline, as before.
struct TimerList {
    /// Longest duration a list takes: deadlines are kept in 32 bits and compared by their
    /// wrapping difference (see `deadline`), which is right while every deadline lies within
    /// 2^31 ms of now. `IOConfiguration.validate` holds the timeouts to this.
    static let maxDurationMilliseconds = Int(Int32.max) / 2

    let durationMilliseconds: Int64
    /// Deadlines are rounded up to a multiple of this on the shard's clock (1: exact). See
    /// "Granularity" above.
    let granularityMilliseconds: Int64
    private var prev: UnsafeMutablePointer<Int32>
    private var next: UnsafeMutablePointer<Int32>
    /// The low 32 bits of each deadline on the shard's millisecond clock (4 bytes per slot, not
    /// 8): `deadline &- now`, read as signed, is the time left. Durations are at most 2^30 ms
    /// (12.4 days) and expired entries are popped every timer tick (at most a second late), so
    /// the difference never leaves the signed range; a shard thread stopped for more than 12
    /// days (SIGSTOP) would see its expired timers as far in the future until the clock came
    /// round again.
    private var deadline: UnsafeMutablePointer<UInt32>
    /// A slot is in the list iff member[slot] == 1. Pages are touched only as slots are used.
    private var member: UnsafeMutablePointer<UInt8>
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var count = 0
    private let capacity: Int

    init(capacity: Int, durationMilliseconds: Int, granularityMilliseconds: Int = 1) {
        precondition(durationMilliseconds >= 0 && durationMilliseconds <= Self.maxDurationMilliseconds,
                     "timer duration \(durationMilliseconds) ms beyond \(Self.maxDurationMilliseconds)")
        // At most a second (the longest tick): a rounded deadline stays within 2^31 ms of now.
        precondition(granularityMilliseconds >= 1 && granularityMilliseconds <= 1000,
                     "timer granularity \(granularityMilliseconds) ms outside 1...1000")
        self.capacity = capacity
        self.durationMilliseconds = Int64(durationMilliseconds)
        self.granularityMilliseconds = Int64(granularityMilliseconds)
        prev = .allocate(capacity: capacity)
        next = .allocate(capacity: capacity)
        deadline = .allocate(capacity: capacity)
        member = .allocate(capacity: capacity)
    }

    /// Marks `slot` (newly in use) as not in the list; called before its first use.
    mutating func prepare(slot: Int) { member[slot] = 0 }

    func contains(_ slot: Int) -> Bool { member[slot] == 1 }

    /// The deadline `slot`'s timer is armed for (it is in the list): for assertions.
    func armedDeadline(_ slot: Int) -> UInt32 {
        assert(member[slot] == 1, "the deadline of a timer not armed")
        return deadline[slot]
    }

    /// The deadline (low 32 bits) of a timer armed at `now`: `now` plus the duration, rounded
    /// up to the granularity. `now` is the shard's monotonic clock (never negative, never going
    /// back), so deadlines armed later are never earlier: arrival order stays deadline order.
    func deadline(armedAt now: Int64) -> UInt32 {
        assert(now >= 0, "the shard's clock is monotonic and positive")
        let exact = now &+ durationMilliseconds
        let g = granularityMilliseconds
        // The division only for a rounded list; the shard computes the idle deadline once per
        // clock reading (`Shard.idleDeadline`), not per read of a socket.
        let rounded = g == 1 ? exact : (exact &+ (g &- 1)) / g &* g
        return UInt32(truncatingIfNeeded: rounded)
    }

    /// Arms (or re-arms) the timer of `slot` for `now`: see `arm(_:deadline:)`.
    mutating func arm(_ slot: Int, now: Int64) {
        arm(slot, deadline: deadline(armedAt: now))
    }

    /// Arms the timer of `slot` for `deadline`, which the caller got from `deadline(armedAt:)`
    /// with the current clock. A timer already armed for exactly that deadline keeps its place
    /// (the common case on a rounded list, see "Granularity"): the order is unchanged, since
    /// nothing about it changed. Otherwise it moves to the back.
    @inline(__always) mutating func arm(_ slot: Int, deadline d: UInt32) {
        if member[slot] == 1 {
            if deadline[slot] == d { return }
            unlink(slot)
        }
        link(slot, deadline: d)
    }

    private mutating func link(_ slot: Int, deadline d: UInt32) {
        // Arrival order is deadline order (see `deadline(armedAt:)`): the back is the latest.
        assert(tail < 0 || Int32(bitPattern: d &- deadline[Int(tail)]) >= 0, "a timer armed earlier than the last one")
        let s = Int32(slot)
        member[slot] = 1
        deadline[slot] = d
        prev[slot] = tail
        next[slot] = -1
        if tail >= 0 { next[Int(tail)] = s } else { head = s }
        tail = s
        count += 1
    }

    mutating func cancel(_ slot: Int) {
        if member[slot] == 1 { unlink(slot) }
    }

    private mutating func unlink(_ slot: Int) {
        let p = prev[slot], n = next[slot]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        member[slot] = 0
        count -= 1
    }

    /// Removes and returns the first expired slot, if any.
    mutating func popExpired(now: Int64) -> Int? {
        guard head >= 0 else { return nil }
        let h = Int(head)
        // Signed time left (see `deadline`): positive means not yet.
        guard Int32(bitPattern: deadline[h] &- UInt32(truncatingIfNeeded: now)) <= 0 else { return nil }
        unlink(h)
        return h
    }

    func deallocate() {
        prev.deallocate(); next.deallocate(); deadline.deallocate(); member.deallocate()
    }
}

/// The per-connection timers a shard keeps.
package enum ConnectionTimer: Sendable {
    /// Nothing was received for `idleTimeoutMilliseconds`.
    case idle
    /// The protocol's phase timer (armed with `armRequestTimer`) ran out.
    case request
}
