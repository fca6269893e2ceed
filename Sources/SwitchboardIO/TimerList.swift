/// Deadlines of one fixed duration, kept in arrival order.
///
/// Every entry of a list gets the same duration, so insertion order is deadline order: arming,
/// re-arming and cancelling are O(1) and expiry pops from the front. A shard keeps one list per
/// kind of timer (idle, request, linger) instead of a general timer heap.
struct TimerList {
    let durationMilliseconds: Int64
    private var prev: UnsafeMutablePointer<Int32>
    private var next: UnsafeMutablePointer<Int32>
    private var deadline: UnsafeMutablePointer<Int64>
    /// A slot is in the list iff member[slot] == 1. Pages are touched only as slots are used.
    private var member: UnsafeMutablePointer<UInt8>
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var count = 0
    private let capacity: Int

    init(capacity: Int, durationMilliseconds: Int) {
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
        deadline[slot] = now + durationMilliseconds
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
        guard deadline[h] <= now else { return nil }
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
