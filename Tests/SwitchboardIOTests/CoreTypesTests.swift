@testable import SwitchboardIO
import Testing

/// The budget of the queues these tests make (`BudgetedQueue`); it lives as long as the process.
nonisolated(unsafe) let coreTypesBudget = ShardMemoryBudget(limitBytes: 1 << 40, gauge: Counter("g", help: ""), hits: Counter("h", help: ""))

@Suite("SocketID, SendQueue, TimerList")
struct CoreTypesTests {
    @Test func socketIDRoundTripsItsFields() {
        let id = SocketID(node: 3, shard: 200, slot: 0xABCDEF, generation: 0x123456)
        #expect(id.node == 3)
        #expect(id.shard == 200)
        #expect(id.slot == 0xABCDEF)
        #expect(id.generation == 0x123456)
        #expect(id.rawValue == 0x03C8_1234_56AB_CDEF)
        // Generations wrap within 24 bits.
        let wrapped = SocketID(shard: 0, slot: 1, generation: 0x0100_0001)
        #expect(wrapped.generation == 1)
        #expect(SocketID(rawValue: id.rawValue) == id)
    }

    @Test func sendQueueConsumesAcrossChunks() {
        var q = BudgetedQueue(budget: coreTypesBudget)
        #expect(q.isEmpty)
        q.append(OutboundBytes(Array("hello".utf8)))
        q.append(OutboundBytes([]))  // empty chunks are ignored
        q.append(OutboundBytes(Array(" world".utf8)))
        q.append(OutboundBytes(Array("!".utf8)))
        #expect(q.queuedBytes == 12)
        #expect(q.chunkCount == 3)
        q.consume(3)
        var seen: [String] = []
        q.forEachPending(max: 8) { seen.append(String(decoding: $0, as: UTF8.self)) }
        #expect(seen == ["lo", " world", "!"])
        q.consume(5)  // "lo" + " wo"
        seen = []
        q.forEachPending(max: 1) { seen.append(String(decoding: $0, as: UTF8.self)) }
        #expect(seen == ["rld"])
        #expect(q.queuedBytes == 4)
        q.consume(4)
        #expect(q.isEmpty && q.queuedBytes == 0 && q.chunkCount == 0)
    }

    @Test func sendQueueStaysCompactUnderLongUse() {
        var q = BudgetedQueue(budget: coreTypesBudget)
        var expected = 0
        for i in 0..<10_000 {
            q.append(OutboundBytes([UInt8](repeating: UInt8(i & 0xFF), count: 3)))
            expected += 3
            if i % 3 == 2 { q.consume(5); expected -= 5 }
            #expect(q.queuedBytes == expected)
        }
        var total = 0
        q.forEachPending(max: Int.max) { total += $0.count }
        #expect(total == expected)
        q.removeAll()  // a queue's references are manual: emptied before it is dropped
    }

    /// The chunks behind the first live in a ring that wraps and doubles: order survives a
    /// growth while the ring's head is in its middle, a partial send, and a drop.
    @Test func sendQueueRingKeepsOrderAcrossWrapAndGrowth() {
        var q = BudgetedQueue(budget: coreTypesBudget)
        var expected: [UInt8] = []
        var next: UInt8 = 0
        func push(_ n: Int) {
            for _ in 0..<n {
                q.append(OutboundBytes([next, next]))  // 2 bytes each, both the chunk's number
                expected += [next, next]
                next &+= 1
            }
        }
        func pending() -> [UInt8] {
            var out: [UInt8] = []
            q.forEachPending(max: Int.max) { out += Array($0) }
            return out
        }
        push(5)  // first + 4 in the ring (its first size)
        q.consume(6)  // 3 chunks sent: the ring's head moves to its middle
        expected.removeFirst(6)
        push(6)  // wraps, then grows with the head not at 0
        #expect(pending() == expected)
        #expect(q.chunkCount == 8 && q.queuedBytes == 16)
        q.consume(3)  // one chunk and half the next
        expected.removeFirst(3)
        #expect(pending() == expected)
        var limited: [UInt8] = []
        q.forEachPending(max: 3) { limited += Array($0) }
        #expect(limited == Array(expected.prefix(5)))  // the half chunk and two whole ones
        q.dropUnstarted(keepingBytes: 3)  // the half chunk (1 byte) and the next (2) stay
        #expect(pending() == Array(expected.prefix(3)) && q.chunkCount == 2)
        expected = Array(expected.prefix(3))
        push(100)  // grows past the size that is kept when empty
        #expect(pending() == expected && q.chunkCount == 102)
        q.consume(q.queuedBytes)
        #expect(q.isEmpty && q.costBytes == 0)
        push(3)
        #expect(pending() == expected.suffix(6))
        q.removeAll()
        #expect(q.isEmpty && q.chunkCount == 0)
    }

    /// Issue 16 item 1: a chunk holds its frame by a manual reference (one retain per queued
    /// copy, no reference counting while chunks move). Each way out of the queue gives exactly
    /// that reference back: the frame lives while any queue holds it and is freed after the last.
    @Test func sendQueueGivesBackEachReferenceOnce() {
        weak var shared: OutboundBytes.Storage?
        weak var dropped: OutboundBytes.Storage?
        var a = BudgetedQueue(budget: coreTypesBudget)
        var b = BudgetedQueue(budget: coreTypesBudget)
        do {
            let frame = OutboundBytes(Array("frame".utf8))  // 5 bytes, in both queues (a fan-out)
            shared = frame.storage
            a.append(frame)
            b.append(frame)
            let tail = OutboundBytes(Array("tail".utf8))
            dropped = tail.storage
            b.append(OutboundBytes(Array("x".utf8)))
            b.append(tail)
        }
        #expect(shared != nil && dropped != nil)
        a.consume(2)  // partly sent: still held
        #expect(shared != nil)
        a.consume(3)
        #expect(a.isEmpty && shared != nil, "b still holds the frame")
        b.consume(5)  // b's copy of the frame, whole
        #expect(shared == nil, "freed with its last queue")
        var seen: [String] = []
        b.forEachPending(max: 8) { seen.append(String(decoding: $0, as: UTF8.self)) }
        #expect(seen == ["x", "tail"])
        b.dropUnstarted(keepingBytes: 0)  // "x" is next and stays; "tail" goes
        #expect(dropped == nil && b.chunkCount == 1 && b.queuedBytes == 1)
        b.removeAll()
        #expect(b.isEmpty && b.costBytes == 0)
    }

    @Test func timerListExpiresInOrderAndRearms() {
        var t = TimerList(capacity: 8, durationMilliseconds: 100)
        defer { t.deallocate() }
        for s in 0..<8 { t.prepare(slot: s) }
        t.arm(1, now: 0)
        t.arm(2, now: 10)
        t.arm(3, now: 20)
        t.arm(1, now: 30)  // re-arm moves slot 1 to the back
        t.cancel(2)
        #expect(t.count == 2)
        #expect(t.popExpired(now: 119) == nil)
        #expect(t.popExpired(now: 120) == 3)
        #expect(t.popExpired(now: 129) == nil)
        #expect(t.popExpired(now: 130) == 1)
        #expect(t.popExpired(now: 10_000) == nil)
        #expect(t.count == 0)
        #expect(!t.contains(1))
    }

    /// Deadlines are 32-bit (issue 16 item 2): a list armed just before the low 32 bits of the
    /// clock wrap still expires in order, at the right time, after the wrap.
    @Test func timerListAcrossThe32BitWrap() {
        var t = TimerList(capacity: 4, durationMilliseconds: 100)
        defer { t.deallocate() }
        for s in 0..<4 { t.prepare(slot: s) }
        let wrap: Int64 = 1 << 32
        t.arm(0, now: wrap - 150)  // deadline wrap - 50
        t.arm(1, now: wrap - 20)   // deadline wrap + 80: its low bits are small
        #expect(t.popExpired(now: wrap - 51) == nil)
        #expect(t.popExpired(now: wrap - 50) == 0)
        #expect(t.popExpired(now: wrap + 79) == nil)
        #expect(t.popExpired(now: wrap + 80) == 1)
        // And a clock far beyond 2^32 (days of uptime in milliseconds times many).
        t.arm(2, now: 7 * wrap + 5)
        #expect(t.popExpired(now: 7 * wrap + 104) == nil)
        #expect(t.popExpired(now: 7 * wrap + 105) == 2)
    }

    /// Issue 16 item 3: a list rounded to a granularity (the idle list: the tick) keeps a timer
    /// re-armed within the same rounded deadline where it is, never fires one early, and stays
    /// in deadline order.
    @Test func timerListRoundedDeadlines() {
        var t = TimerList(capacity: 4, durationMilliseconds: 300, granularityMilliseconds: 100)
        defer { t.deallocate() }
        for s in 0..<4 { t.prepare(slot: s) }
        #expect(t.deadline(armedAt: 1_000) == 1_300)  // on the grid: exact
        #expect(t.deadline(armedAt: 1_001) == 1_400)  // rounded up, never down
        #expect(t.deadline(armedAt: 1_099) == 1_400)
        t.arm(0, now: 1_001)  // 1,400
        t.arm(1, now: 1_050)  // 1,400
        t.arm(0, now: 1_099)  // still 1,400: stays in front of slot 1
        t.arm(2, now: 1_100)  // 1,400 (on the grid)
        t.arm(3, now: 1_120)  // 1,500
        #expect(t.count == 4)
        #expect(t.popExpired(now: 1_399) == nil)  // slot 0's exact deadline (1,399) is not a fire time
        #expect(t.popExpired(now: 1_400) == 0)
        #expect(t.popExpired(now: 1_400) == 1)
        #expect(t.popExpired(now: 1_400) == 2)
        #expect(t.popExpired(now: 1_400) == nil)
        // Re-armed in a later grid step: moved to the back, behind slot 3.
        t.arm(1, now: 1_450)  // 1,800
        t.arm(0, now: 1_460)  // 1,800
        #expect(t.popExpired(now: 1_500) == 3)
        #expect(t.popExpired(now: 1_799) == nil)
        #expect(t.popExpired(now: 1_800) == 1)
        #expect(t.popExpired(now: 1_800) == 0)
        #expect(t.count == 0)
    }

    /// The rounded deadline of a timer armed at any time `a` is the first grid point at or
    /// after `a + duration`: never before it and less than one granularity after it. Checked
    /// for every arrival time across a few grid steps and across the 32-bit wrap.
    @Test func timerListRoundingBounds() {
        let t = TimerList(capacity: 1, durationMilliseconds: 250, granularityMilliseconds: 100)
        defer { t.deallocate() }
        for base: Int64 in [0, (1 << 32) - 1_000, 5 * (1 << 32) + 17] {
            for a in base..<(base + 1_000) {
                let exact = a + 250
                let rounded = Int64(t.deadline(armedAt: a))
                let late = (rounded - Int64(UInt32(truncatingIfNeeded: exact)) + (1 << 32)) % (1 << 32)
                #expect(late >= 0 && late < 100, "armed at \(a): \(late) ms late")
            }
        }
    }

    @Test func configurationValidation() {
        var c = IOConfiguration()
        #expect(c.validate() == nil)
        c.idleTimeoutMilliseconds = TimerList.maxDurationMilliseconds + 1
        #expect(c.validate() != nil)  // deadlines are kept in 32 bits
        c.idleTimeoutMilliseconds = TimerList.maxDurationMilliseconds
        #expect(c.validate() == nil)
        c.recvBufferCount = 100
        #expect(c.validate() != nil)
        c = IOConfiguration()
        c.maxConnectionsPerShard = SocketID.maxSlots
        #expect(c.validate() != nil)
        c = IOConfiguration()
        c.tickMilliseconds = 0
        #expect(c.validate() != nil)
    }
}
