@testable import SwitchboardIO
import Testing

/// Issue 16 item 1: a fan-out takes its queues' references to the frame in one step and gives
/// the unused ones back in one. Every reference taken must end up released exactly once: one
/// too many frees the frame under a queue (a crash or garbage on the wire), one too few leaks
/// every published frame. A weak reference shows which.
@Suite("SharedFrame")
struct SharedFrameTests {
    @Test("references not handed to a queue are given back when the fan-out ends")
    func unusedReferencesGoBack() {
        weak var watched: OutboundBytes.Storage?
        var a = BudgetedQueue(budget: coreTypesBudget)
        var b = BudgetedQueue(budget: coreTypesBudget)
        do {
            let frame = OutboundBytes(Array("hello".utf8))
            watched = frame.storage
            var shared = SharedFrame(frame, references: 5)  // 5 subscribers, 2 take it
            #expect(shared.unused == 5)
            a.append(retained: shared.take(), isBlock: false)
            b.append(retained: shared.take(), isBlock: false)
            #expect(shared.unused == 3)
        }
        #expect(watched != nil, "two queues hold it")
        var seen: [String] = []
        b.forEachPending(max: 4) { seen.append(String(decoding: $0, as: UTF8.self)) }
        #expect(seen == ["hello"])
        a.consume(5)
        #expect(watched != nil, "b holds it")
        b.consume(5)
        #expect(watched == nil, "freed after the last queue: the 3 unused references went back")
    }

    @Test("a fan-out nobody takes leaves no reference behind")
    func noneTaken() {
        weak var watched: OutboundBytes.Storage?
        do {
            let frame = OutboundBytes(Array("x".utf8))
            watched = frame.storage
            let shared = SharedFrame(frame, references: 1000)
            #expect(shared.unused == 1000)
            let empty = SharedFrame(frame, references: 0)
            #expect(empty.unused == 0)
        }
        #expect(watched == nil)
    }

    @Test("three copies in one queue hold three references, released as each is sent")
    func oneReferencePerQueuedCopy() {
        // `Shard.send(_:_:)` with a shared frame through real sockets (limits, slow consumers,
        // order) is covered by the channel and fan-out suites; here only the bookkeeping.
        weak var watched: OutboundBytes.Storage?
        var q = BudgetedQueue(budget: coreTypesBudget)
        do {
            let frame = OutboundBytes([UInt8](repeating: 7, count: 100))
            watched = frame.storage
            var shared = SharedFrame(frame, references: 3)
            for _ in 0..<3 { q.append(retained: shared.take(), isBlock: false) }
            #expect(shared.unused == 0)
        }
        #expect(q.chunkCount == 3 && q.queuedBytes == 300)
        q.consume(250)
        #expect(watched != nil)
        q.consume(50)
        #expect(watched == nil && q.isEmpty)
    }
}
