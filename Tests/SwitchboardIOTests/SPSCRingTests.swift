import Testing
@testable import SwitchboardIO

@Suite struct SPSCRingSingleThreadTests {
    @Test func capacityRoundsUpToPowerOfTwo() {
        let cases: [(requested: Int, expected: Int)] = [
            (2, 2), (3, 4), (4, 4), (5, 8), (1000, 1024), (1024, 1024), (1025, 2048),
        ]
        for (requested, expected) in cases {
            #expect(SPSCRing<Int>(capacity: requested).capacity == expected)
        }
        // The upper bound itself is accepted by the rounding rule (not allocated here:
        // 1 << 30 slots would be 8 GiB of Ints).
        #expect(_switchboardQueueCapacity(1 << 30) == 1 << 30)
        #expect(_switchboardQueueCapacity((1 << 29) + 1) == 1 << 30)
    }

    @Test func fifoAndFullAtExactlyCapacity() {
        let ring = SPSCRing<Int>(capacity: 8)
        #expect(ring.isEmptyApproximately)
        #expect(ring.tryPop() == nil)
        for i in 0..<8 {
            #expect(ring.tryPush(i))
        }
        #expect(!ring.tryPush(8), "push into a full ring must fail")
        #expect(ring.approximateCount == 8)
        for i in 0..<8 {
            #expect(ring.tryPop() == i)
        }
        #expect(ring.tryPop() == nil)
        #expect(ring.approximateCount == 0)
        // Freed exactly one slot: exactly one push succeeds.
        for i in 0..<8 { #expect(ring.tryPush(i)) }
        #expect(ring.tryPop() == 0)
        #expect(ring.tryPush(100))
        #expect(!ring.tryPush(101))
    }

    @Test func wrapsAroundManyTimes() {
        let ring = SPSCRing<Int>(capacity: 4)
        var nextPush = 0
        var nextPop = 0
        // Varying batch sizes so head/tail hit every slot offset and wrap thousands
        // of times.
        for round in 0..<20_000 {
            let batch = 1 + round % 4
            for _ in 0..<batch {
                #expect(ring.tryPush(nextPush))
                nextPush += 1
            }
            for _ in 0..<batch {
                let value = ring.tryPop()
                #expect(value == nextPop)
                nextPop += 1
            }
        }
        #expect(ring.tryPop() == nil)
        #expect(nextPop == nextPush)
    }

    @Test func drainInBatches() {
        let ring = SPSCRing<Int>(capacity: 16)
        #expect(ring.drain(max: 10) { _ in Issue.record("empty ring drained something") } == 0)
        for i in 0..<10 { #expect(ring.tryPush(i)) }

        var seen: [Int] = []
        #expect(ring.drain(max: 3) { seen.append($0) } == 3)
        #expect(seen == [0, 1, 2])
        #expect(ring.drain(max: 0) { seen.append($0) } == 0)
        #expect(ring.approximateCount == 7)
        #expect(ring.drain(max: 100) { seen.append($0) } == 7)
        #expect(seen == Array(0..<10))

        // Drain across the wrap point (head at 10, 12 elements -> wraps at 16).
        for i in 10..<22 { #expect(ring.tryPush(i)) }
        #expect(ring.drain(max: 100) { seen.append($0) } == 12)
        #expect(seen == Array(0..<22))
        #expect(ring.isEmptyApproximately)
    }

    @Test func drainBodyMayPushWhenSameThreadIsProducer() {
        let ring = SPSCRing<Int>(capacity: 4)
        for i in 0..<4 { #expect(ring.tryPush(i)) }
        var pushedDuringDrain = 0
        let drained = ring.drain(max: 4) { value in
            // Slots being drained are not released until drain returns: still full.
            if ring.tryPush(value + 100) { pushedDuringDrain += 1 }
        }
        #expect(drained == 4)
        #expect(pushedDuringDrain == 0)
        #expect(ring.isEmptyApproximately)
    }

    @Test func deinitReleasesRemainingElements() {
        let tracker = DeinitTracker()
        do {
            let ring = SPSCRing<Tracked>(capacity: 8)
            for i in 0..<6 { #expect(ring.tryPush(Tracked(i, tracker))) }
            // Popped elements are released when the caller drops them.
            #expect(ring.tryPop()?.value == 0)
            #expect(ring.tryPop()?.value == 1)
            #expect(tracker.deinits == 2)
            // head 2, tail 10: the 8 live elements wrap past the end of the storage.
            for i in 6..<10 { #expect(ring.tryPush(Tracked(i, tracker))) }
            // Full: the rejected element must not leak or be over-released.
            let rejected = Tracked(99, tracker)
            #expect(!ring.tryPush(rejected))
            #expect(rejected.value == 99)
            #expect(tracker.deinits == 2)
            withExtendedLifetime(ring) {}
        }
        // 8 still queued + 2 popped + 1 rejected.
        #expect(tracker.deinits == 11)
    }

    @Test func deinitOfEmptyAndDrainedRing() {
        let tracker = DeinitTracker()
        do {
            let ring = SPSCRing<Tracked>(capacity: 2)
            for round in 0..<100 {
                #expect(ring.tryPush(Tracked(round, tracker)))
                var popped = -1
                #expect(ring.drain(max: 1) { popped = $0.value } == 1)
                #expect(popped == round)
            }
            withExtendedLifetime(ring) {}
        }
        #expect(tracker.deinits == 100)
    }
}

/// Real-thread stress tests. Serialized (and in one suite with the MPSC ones)
/// because the box has 2 cores: running two spin-heavy tests at once would only
/// measure the scheduler.
extension QueueStressTests {
    /// 5M as specified: a debug build moves roughly 25M Ints/s through the ring on
    /// the 2-core box, so this takes well under a second.
    static let spscIntCount = 5_000_000

    @Test func spscTwoThreadsIntsInOrder() {
        let count = Self.spscIntCount
        let ring = SPSCRing<Int>(capacity: 1024)
        let deadline = SpinDeadline(seconds: 9)
        let production = Production(budgetSeconds: 5, minimum: 100_000)
        let producerGaveUp = Box(false)
        let result = Box((received: 0, firstMismatch: Int?.none, timedOut: false))

        var finished = false
        let seconds = measureSeconds {
            finished = runThreads([
                {
                    var spins = 0
                    var made = 0
                    while made < count && production.mayProduce(made) {
                        while !ring.tryPush(made) {
                            if !deadline.wait(&spins) { producerGaveUp.value = true; return }
                        }
                        made += 1
                    }
                    production.finish(made)
                },
                {
                    var expected = 0
                    var mismatch: Int? = nil
                    var spins = 0
                    var useDrain = true
                    while true {
                        // Alternate both consumer paths so each sees a racing producer.
                        var got = 0
                        if useDrain {
                            got = ring.drain(max: 64) { value in
                                if value != expected, mismatch == nil { mismatch = expected }
                                expected += 1
                            }
                        } else if let value = ring.tryPop() {
                            if value != expected, mismatch == nil { mismatch = expected }
                            expected += 1
                            got = 1
                        }
                        useDrain.toggle()
                        if got == 0 {
                            if let produced = production.produced, expected >= produced { break }
                            if !deadline.wait(&spins) {
                                result.value.timedOut = true
                                break
                            }
                        }
                    }
                    result.value.received = expected
                    result.value.firstMismatch = mismatch
                },
            ])
        }
        #expect(finished)
        #expect(!producerGaveUp.value)
        #expect(!result.value.timedOut)
        let produced = production.produced ?? -1
        #expect(produced >= production.minimum && produced <= count, "the producer made \(produced) of \(count)")
        #expect(result.value.received == produced)
        #expect(result.value.firstMismatch == nil, "first out-of-order value at index \(result.value.firstMismatch ?? -1)")
        #expect(ring.tryPop() == nil, "nothing duplicated or left over")
        print("SPSCRing<Int> debug build: \(produced) of \(count) transfers in \(seconds) s = \(Int(Double(produced) / seconds)) ops/s")
    }

    @Test func spscTwoThreadsTinyRingStress() {
        // Capacity 2 makes nearly every operation hit the full/empty edge, so the
        // cached-index reload paths race constantly.
        let count = 200_000
        let ring = SPSCRing<Int>(capacity: 2)
        let deadline = SpinDeadline(seconds: 9)
        let production = Production(budgetSeconds: 5, minimum: 1_000)
        let result = Box((received: 0, inOrder: true))
        let finished = runThreads([
            {
                var spins = 0
                var made = 0
                while made < count && production.mayProduce(made) {
                    while !ring.tryPush(made) { if !deadline.wait(&spins) { return } }
                    made += 1
                }
                production.finish(made)
            },
            {
                var expected = 0
                var spins = 0
                var inOrder = true
                while true {
                    if let value = ring.tryPop() {
                        if value != expected { inOrder = false }
                        expected += 1
                    } else if let produced = production.produced, expected >= produced {
                        break
                    } else if !deadline.wait(&spins) {
                        break
                    }
                }
                result.value = (expected, inOrder)
            },
        ])
        #expect(finished)
        let produced = production.produced ?? -1
        #expect(produced >= production.minimum && produced <= count, "the producer made \(produced) of \(count)")
        #expect(result.value.received == produced)
        #expect(result.value.inOrder)
        #expect(ring.tryPop() == nil)
    }

    @Test func spscTwoThreadsClassReferences() {
        let count = 200_000
        let tracker = DeinitTracker()
        let result = Box((received: 0, inOrder: true, timedOut: false))
        var finished = false
        do {
            let ring = SPSCRing<Tracked>(capacity: 256)
            let deadline = SpinDeadline(seconds: 9)
            finished = runThreads([
                {
                    var spins = 0
                    for i in 0..<count {
                        let object = Tracked(i, tracker)
                        while !ring.tryPush(object) { if !deadline.wait(&spins) { return } }
                    }
                },
                {
                    var expected = 0
                    var spins = 0
                    var inOrder = true
                    while expected < count {
                        let got = ring.drain(max: 32) { object in
                            if object.value != expected { inOrder = false }
                            expected += 1
                        }
                        if got == 0, !deadline.wait(&spins) {
                            result.value.timedOut = true
                            break
                        }
                    }
                    result.value.received = expected
                    result.value.inOrder = inOrder
                },
            ])
            withExtendedLifetime(ring) {}
        }
        #expect(finished)
        #expect(!result.value.timedOut)
        #expect(result.value.received == count)
        #expect(result.value.inOrder)
        // Every object released exactly once: none leaked in the ring, none freed early
        // (an over-release would have crashed or double-counted).
        #expect(tracker.deinits == count)
    }
}
