extension Array {
    /// The elements in order, as consecutive slices of at most `size` (the last may be
    /// shorter; none when empty). The protocols write their state to Redis one script per
    /// batch, so that one script's run in Redis, and its command's size, stay bounded.
    func batches(of size: Int) -> [ArraySlice<Element>] {
        precondition(size > 0, "a batch holds at least one element")
        return stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
