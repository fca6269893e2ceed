/// A binary min-heap of (deadline, key) for request timeouts. Entries are never removed early:
/// an answered request leaves its entry, which is skipped when it surfaces (the pending table
/// is the truth), so answering stays O(1). The core rebuilds it from its pending table when
/// stale entries outnumber live ones, which keeps it bounded.
struct RPCDeadlineHeap {
    private(set) var items: [(deadline: ContinuousClock.Instant, key: UInt64)] = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var top: (deadline: ContinuousClock.Instant, key: UInt64)? { items.first }

    mutating func push(_ deadline: ContinuousClock.Instant, _ key: UInt64) {
        items.append((deadline, key))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].deadline < items[parent].deadline else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (deadline: ContinuousClock.Instant, key: UInt64)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < items.count, items[l].deadline < items[smallest].deadline { smallest = l }
            if r < items.count, items[r].deadline < items[smallest].deadline { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
