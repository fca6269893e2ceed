@testable import SwitchboardIO

/// A `SendQueue` with its memory budget beside it, for the tests that drive a queue alone.
///
/// A shard passes its budget to every queue call that changes the queue's cost (the queue
/// does not keep it: `SendQueue.init()`); a test holds one budget per queue, so this pairs
/// them and forwards each call with it. Properties read through to the queue.
@dynamicMemberLookup
struct BudgetedQueue {
    private(set) var queue = SendQueue()
    let budget: ShardMemoryBudget

    init(budget: ShardMemoryBudget) { self.budget = budget }

    subscript<Value>(dynamicMember path: KeyPath<SendQueue, Value>) -> Value { queue[keyPath: path] }

    /// The send blocks the budget holds (the shard's pool).
    var pool: SendBlockPool { budget.blocks }

    mutating func append(_ bytes: OutboundBytes) { queue.append(bytes, budget: budget) }

    mutating func append(retained bytes: Unmanaged<OutboundBytes.Storage>, isBlock: Bool) {
        queue.append(retained: bytes, isBlock: isBlock, budget: budget)
    }

    mutating func appendCoalescing(_ bytes: UnsafeRawBufferPointer, inFlightBytes: Int, pool: SendBlockPool) -> Bool {
        queue.appendCoalescing(bytes, inFlightBytes: inFlightBytes, pool: pool, budget: budget)
    }

    mutating func appendInBlock(count: Int, inFlightBytes: Int, pool: SendBlockPool, _ fill: (UnsafeMutableRawPointer) -> Void) -> Bool {
        queue.appendInBlock(count: count, inFlightBytes: inFlightBytes, pool: pool, budget: budget, fill)
    }

    mutating func consume(_ count: Int) { queue.consume(count, budget: budget) }

    mutating func dropUnstarted(keepingBytes: Int) { queue.dropUnstarted(keepingBytes: keepingBytes, budget: budget) }

    mutating func removeAll() { queue.removeAll(budget: budget) }

    func forEachPending(max: Int, _ body: (UnsafeRawBufferPointer) -> Void) { queue.forEachPending(max: max, body) }

    func forEachChunk(_ body: (SendQueue.Chunk) -> Void) { queue.forEachChunk(body) }
}
