/// Verifies one fan-out subscriber's deliveries: every publisher numbers its messages 0, 1, 2,
/// ... (the `SEQ` of the `#sb:PUB:SEQ:NANOS#` marker), and a subscriber must see each
/// publisher's numbers as one gap-free increasing run.
///
/// Thread rules: owned by the worker thread that owns the subscriber; read by the main thread
/// only after that worker was joined.
///
/// Counting, per publisher, with `next` the number expected next:
/// - `seq == next`: in order.
/// - `seq > next`: the `seq - next` numbers in between are counted `missing` (a gap).
/// - `seq < next`: counted `reordered` (a late arrival of a number already passed, or a
///   duplicate); `next` does not move back.
/// - at the end, `finish(published:)` counts what never came after the last delivery (a lost
///   tail) as `missing` too.
/// So a reorder such as 0, 2, 1 reads "1 missing, 1 reordered": both mean the run failed.
public struct SequenceChecker: Sendable {
    /// Next number expected from each publisher, by local publisher index.
    private var next: [Int64]
    /// Deliveries that came in order.
    public private(set) var inOrder = 0
    /// Numbers skipped over (gaps) or never delivered (lost tail, after `finish`).
    public private(set) var missing: Int64 = 0
    /// Deliveries that came after a higher number from the same publisher (late or duplicate).
    public private(set) var reordered = 0
    /// Deliveries whose publisher index is out of range (not a publisher of this channel).
    public private(set) var foreign = 0

    /// - Parameter publishers: how many publishers this subscriber hears from (local indices
    ///   `0..<publishers`).
    public init(publishers: Int) {
        precondition(publishers >= 0, "publisher count must be non-negative")
        next = [Int64](repeating: 0, count: publishers)
    }

    /// Records a delivery of message `seq` from local publisher `publisher`.
    @inline(__always)
    public mutating func record(publisher: Int, seq: Int64) {
        guard publisher >= 0 && publisher < next.count && seq >= 0 else {
            foreign += 1
            return
        }
        let expected = next[publisher]
        if seq == expected {
            inOrder += 1
            next[publisher] = seq + 1
        } else if seq > expected {
            missing += seq - expected
            next[publisher] = seq + 1
        } else {
            reordered += 1
        }
    }

    /// Counts the tail each publisher published but this subscriber never received:
    /// `published[p]` is how many messages local publisher `p` sent in all (warm-up included).
    public mutating func finish(published: [Int64]) {
        precondition(published.count == next.count, "one published count per publisher")
        for p in 0..<next.count where published[p] > next[p] {
            missing += published[p] - next[p]
            next[p] = published[p]
        }
    }
}
