@testable import SwitchboardIO
import CLiburing
import Testing

/// Issue 17: a send queue's limits count what it costs. `SendQueue.entryOverheadBytes` is a
/// measurement; this re-measures it (glibc's `mallinfo2`, heap bytes in use) and fails if the
/// constant under-counts.
@Suite("SendQueue cost accounting")
struct SendQueueCostTests {
    func budget(_ limit: Int = 1 << 40) -> ShardMemoryBudget {
        ShardMemoryBudget(limitBytes: limit, gauge: Counter("g", help: ""), hits: Counter("h", help: ""))
    }

    @Test("100,000 queued 2-byte frames cost no more than entryOverheadBytes + 2 each")
    func measuredOverhead() {
        let b = budget()
        var queue = BudgetedQueue(budget: b)
        let count = 100_000
        let before = Int(sb_malloc_in_use())
        for _ in 0..<count { queue.append(OutboundBytes([0x8A, 0x00])) }
        let perEntry = Double(Int(sb_malloc_in_use()) - before) / Double(count)
        print("SendQueue: measured \(perEntry) heap bytes per queued 2-byte frame (constant: \(SendQueue.entryOverheadBytes) + payload)")
        #expect(perEntry <= Double(SendQueue.entryOverheadBytes + 2), "measured \(perEntry) bytes per entry")
        // Close to it, too: a constant far above the truth would refuse honest traffic.
        #expect(perEntry >= Double(SendQueue.entryOverheadBytes) / 2, "measured \(perEntry) bytes per entry")
        #expect(queue.costBytes == count * (SendQueue.entryOverheadBytes + 2))
        #expect(b.usedBytes == queue.costBytes)
        queue.removeAll()
        #expect(b.usedBytes == 0)
    }

    @Test("the budget follows consume, partial consume and dropUnstarted exactly")
    func budgetFollowsQueue() {
        let b = budget()
        var queue = BudgetedQueue(budget: b)
        for i in 0..<10 { queue.append(OutboundBytes([UInt8](repeating: UInt8(i), count: 100))) }
        #expect(b.usedBytes == 10 * (100 + SendQueue.entryOverheadBytes))
        queue.consume(150)  // one whole chunk and half of the next
        #expect(queue.chunkCount == 9 && queue.queuedBytes == 850)
        #expect(b.usedBytes == queue.costBytes)
        #expect(queue.sentBytesTotal == 150)
        queue.dropUnstarted(keepingBytes: 0)  // the half-sent chunk stays whole
        #expect(queue.chunkCount == 1 && queue.queuedBytes == 50)
        #expect(b.usedBytes == queue.costBytes)
        for _ in 0..<3 { queue.append(OutboundBytes([1, 2, 3])) }
        queue.dropUnstarted(keepingBytes: 53)  // an in-flight send covering the next chunk too
        #expect(queue.chunkCount == 2 && queue.queuedBytes == 53)
        #expect(b.usedBytes == queue.costBytes)
        queue.consume(53)
        #expect(queue.isEmpty && b.usedBytes == 0)
    }

    @Test("the budget refuses what does not fit and counts the hit")
    func budgetRefuses() {
        let hits = Counter("h", help: "")
        let b = ShardMemoryBudget(limitBytes: 1000, gauge: Counter("g", help: ""), hits: hits)
        b.connections = 4
        #expect(b.tryCharge(600, holding: 0))
        #expect(!b.tryCharge(600, holding: 0))
        #expect(hits.value == 1)
        #expect(b.fairShareBytes(connections: 4) == 250)
        // Past the limit, a connection within its fair share (250) is still admitted; one
        // that would go past it is not.
        #expect(!b.tryCharge(500, holding: 0))
        #expect(b.tryCharge(250, holding: 0))
        #expect(b.usedBytes == 850)
        #expect(b.tryCharge(250, holding: 0))
        #expect(b.usedBytes == 1100)
        #expect(!b.tryCharge(10, holding: 250))
        #expect(hits.value == 3)
        b.release(500)
        b.release(600)
        #expect(b.usedBytes == 0)
    }
}
