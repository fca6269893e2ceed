/// Deadlines of one fixed duration, kept in arrival order.
///
/// Every entry of a list gets the same duration, so insertion order is deadline order: arming,
/// re-arming and cancelling are O(1) and expiry pops from the front. A shard keeps one list per
/// kind of timer (idle, request, linger) instead of a general timer heap.
///
/// Memory (issue 16 item 2): the arrays are indexed by slot and their pages become resident as
/// slots are used, so every used slot costs 13 bytes per list it was ever armed in (prev, next,
/// deadline) plus 1 (member) per list.
struct TimerList {
    /// Longest duration a list takes: deadlines are kept in 32 bits and compared by their
    /// wrapping difference (see `deadline`), which is right while every deadline lies within
    /// 2^31 ms of now. `IOConfiguration.validate` holds the timeouts to this.
    static let maxDurationMilliseconds = Int(Int32.max) / 2

    let durationMilliseconds: Int64
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

    init(capacity: Int, durationMilliseconds: Int) {
        precondition(durationMilliseconds >= 0 && durationMilliseconds <= Self.maxDurationMilliseconds,
                     "timer duration \(durationMilliseconds) ms beyond \(Self.maxDurationMilliseconds)")
        self.capacity = capacity
        self.durationMilliseconds = Int64(durationMilliseconds)
        prev = .allocate(capacity: capacity)
        next = .allocate(capacity: capacity)
        deadline = .allocate(capacity: capacity)
        member = .allocate(capacity: capacity)
    }

    /// Marks `slot` (newly in use) as not in the list; called before its first use.
    mutating func prepare(slot: Int) { member[slot] = 0 }

    func contains(_ slot: Int) -> Bool { member[slot] == 1 }

    /// Arms (or re-arms, moving to the back) the timer of `slot`.
    mutating func arm(_ slot: Int, now: Int64) {
        if member[slot] == 1 { unlink(slot) }
        let s = Int32(slot)
        member[slot] = 1
        deadline[slot] = UInt32(truncatingIfNeeded: now &+ durationMilliseconds)
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
