import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchboardIO

/// All real-thread stress tests live in this one serialized suite (extended from
/// the SPSC and MPSC test files) so they never compete for the box's 2 cores.
@Suite(.serialized) struct QueueStressTests {}

struct ProducerItem: Sendable, Equatable {
    let producer: Int
    let sequence: Int
}

@Suite struct MPSCQueueSingleThreadTests {
    @Test func capacityRoundsUpToPowerOfTwo() {
        #expect(MPSCQueue<Int>(capacity: 2).capacity == 2)
        #expect(MPSCQueue<Int>(capacity: 3).capacity == 4)
        #expect(MPSCQueue<Int>(capacity: 1000).capacity == 1024)
    }

    @Test func fifoAndFullAtExactlyCapacity() {
        let queue = MPSCQueue<Int>(capacity: 3)  // rounds to 4
        #expect(queue.tryPop() == nil)
        for i in 0..<4 { #expect(queue.tryPush(i)) }
        #expect(!queue.tryPush(4), "push into a full queue must fail")
        #expect(!queue.tryPush(5))
        #expect(queue.approximateCount == 4)
        #expect(queue.tryPop() == 0)
        #expect(queue.tryPush(4))
        #expect(!queue.tryPush(5))
        for i in 1...4 { #expect(queue.tryPop() == i) }
        #expect(queue.tryPop() == nil)
        #expect(queue.approximateCount == 0)
    }

    @Test func wrapsAroundManyTimes() {
        let queue = MPSCQueue<Int>(capacity: 4)
        var nextPush = 0
        var nextPop = 0
        for round in 0..<20_000 {
            let batch = 1 + round % 4
            for _ in 0..<batch {
                #expect(queue.tryPush(nextPush))
                nextPush += 1
            }
            for _ in 0..<batch {
                let value = queue.tryPop()
                #expect(value == nextPop)
                nextPop += 1
            }
        }
        #expect(queue.tryPop() == nil)
    }

    @Test func drainInBatches() {
        let queue = MPSCQueue<Int>(capacity: 8)
        #expect(queue.drain(max: 5) { _ in Issue.record("empty queue drained something") } == 0)
        for i in 0..<6 { #expect(queue.tryPush(i)) }
        var seen: [Int] = []
        #expect(queue.drain(max: 4) { seen.append($0) } == 4)
        #expect(queue.drain(max: 0) { seen.append($0) } == 0)
        #expect(queue.approximateCount == 2)
        // Wrap: 2 left + 6 more = full again across the end of storage.
        for i in 6..<12 { #expect(queue.tryPush(i)) }
        #expect(!queue.tryPush(12))
        #expect(queue.drain(max: 100) { seen.append($0) } == 8)
        #expect(seen == Array(0..<12))
        #expect(queue.tryPop() == nil)
    }

    @Test func deinitReleasesRemainingElements() {
        let tracker = DeinitTracker()
        do {
            let queue = MPSCQueue<Tracked>(capacity: 8)
            for i in 0..<6 { #expect(queue.tryPush(Tracked(i, tracker))) }
            #expect(queue.tryPop()?.value == 0)
            var popped = -1
            #expect(queue.drain(max: 1) { popped = $0.value } == 1)
            #expect(popped == 1)
            #expect(tracker.deinits == 2)
            // Live range wraps past the end of storage, then fills it.
            for i in 6..<10 { #expect(queue.tryPush(Tracked(i, tracker))) }
            let rejected = Tracked(99, tracker)
            #expect(!queue.tryPush(rejected))
            #expect(tracker.deinits == 2)
            withExtendedLifetime(queue) {}
        }
        // 8 queued + 2 popped + 1 rejected.
        #expect(tracker.deinits == 11)
    }

    /// Issue 16, base RSS: a queue's sequences are fresh zero pages (each cell stores its
    /// sequence minus its index, so the first lap's are all 0), resident only as cells are
    /// used. A shard's inbox has 65,536 cells: writing every sequence at creation made 512 KiB
    /// of each shard resident before its first task. Checked with mincore on the mapping.
    @Test func sequencesAreResidentOnlyAsCellsAreUsed() {
        let pageBytes = Int(sysconf(Int32(_SC_PAGESIZE)))
        let queue = MPSCQueue<Int>(capacity: 65_536)
        let sequenceBytes = queue.capacity * MemoryLayout<Int>.stride
        func residentPages() -> Int {
            let pages = (sequenceBytes + pageBytes - 1) / pageBytes
            var vector = [UInt8](repeating: 0, count: pages)
            let result = mincore(UnsafeMutableRawPointer(queue.sequences), sequenceBytes, &vector)
            #expect(result == 0, "mincore errno \(errno)")
            return vector.reduce(0) { $0 + Int($1 & 1) }
        }
        #expect(residentPages() == 0, "a new queue's sequences are not resident")
        // 1,000 cells used: their sequences are 8,000 bytes from the mapping's page-aligned
        // start, so exactly 2 pages, and the queue works on the lazily zeroed cells.
        for i in 0..<1_000 { #expect(queue.tryPush(i)) }
        #expect(queue.drain(max: 2_000) { _ in } == 1_000)
        #expect(residentPages() == 2)
        // Two laps over the whole queue: every page in use, values in order.
        var popped = 0
        for lap in 0..<2 {
            let pushed = (0..<queue.capacity).filter { queue.tryPush(lap * queue.capacity + $0) }.count
            #expect(pushed == queue.capacity)
            #expect(!queue.tryPush(-1), "full after capacity pushes")
            queue.drain(max: queue.capacity) { value in
                if value != lap * queue.capacity + popped % queue.capacity { Issue.record("popped \(value) at \(popped)") }
                popped += 1
            }
        }
        #expect(popped == 2 * queue.capacity)
        #expect(residentPages() == sequenceBytes / pageBytes)
    }
}

extension QueueStressTests {
    static let mpscProducers = 4
    static let mpscItemsPerProducer = 500_000

    @Test func mpscFourProducersPerProducerOrder() {
        let producers = Self.mpscProducers
        let perProducer = Self.mpscItemsPerProducer
        let total = producers * perProducer
        let queue = MPSCQueue<ProducerItem>(capacity: 1024)
        let deadline = SpinDeadline(seconds: 9)
        let gaveUp = Box(Array(repeating: false, count: producers))
        let result = Box((received: 0, orderViolations: 0, badProducer: 0, timedOut: false, nextSequence: [Int]()))

        var bodies: [@Sendable () -> Void] = []
        for producer in 0..<producers {
            bodies.append {
                var spins = 0
                for sequence in 0..<perProducer {
                    while !queue.tryPush(ProducerItem(producer: producer, sequence: sequence)) {
                        if !deadline.wait(&spins) { gaveUp.value[producer] = true; return }
                    }
                }
            }
        }
        bodies.append {
            var next = Array(repeating: 0, count: producers)
            var received = 0
            var violations = 0
            var badProducer = 0
            var spins = 0
            var useDrain = true
            func check(_ item: ProducerItem) {
                received += 1
                guard item.producer >= 0, item.producer < producers else { badProducer += 1; return }
                // Per-producer FIFO: each producer's items arrive exactly 0, 1, 2, ...
                if item.sequence != next[item.producer] { violations += 1 }
                next[item.producer] = item.sequence + 1
            }
            while received < total {
                var got = 0
                if useDrain {
                    got = queue.drain(max: 64) { check($0) }
                } else if let item = queue.tryPop() {
                    check(item)
                    got = 1
                }
                useDrain.toggle()
                if got == 0, !deadline.wait(&spins) {
                    result.value.timedOut = true
                    break
                }
            }
            result.value.received = received
            result.value.orderViolations = violations
            result.value.badProducer = badProducer
            result.value.nextSequence = next
        }

        var finished = false
        let seconds = measureSeconds { finished = runThreads(bodies) }
        #expect(finished)
        #expect(!gaveUp.value.contains(true))
        #expect(!result.value.timedOut)
        #expect(result.value.received == total)
        #expect(result.value.orderViolations == 0)
        #expect(result.value.badProducer == 0)
        #expect(result.value.nextSequence == Array(repeating: perProducer, count: producers))
        #expect(queue.tryPop() == nil, "nothing duplicated or left over")
        #expect(queue.approximateCount == 0)
        print("MPSCQueue debug build: \(total) transfers from \(producers) producers in \(seconds) s = \(Int(Double(total) / seconds)) ops/s")
    }

    @Test func mpscClassReferencesFromTwoProducers() {
        let perProducer = 100_000
        let tracker = DeinitTracker()
        let result = Box((received: 0, inOrder: true))
        var finished = false
        do {
            let queue = MPSCQueue<Tracked>(capacity: 128)
            let deadline = SpinDeadline(seconds: 9)
            // Producer p pushes values p, p + 2, p + 4, ...: per-producer order is
            // checkable from the value alone.
            var bodies: [@Sendable () -> Void] = (0..<2).map { producer in
                {
                    var spins = 0
                    for i in 0..<perProducer {
                        let object = Tracked(i * 2 + producer, tracker)
                        while !queue.tryPush(object) { if !deadline.wait(&spins) { return } }
                    }
                }
            }
            bodies.append {
                var next = [0, 1]
                var received = 0
                var inOrder = true
                var spins = 0
                while received < 2 * perProducer {
                    let got = queue.drain(max: 32) { object in
                        let producer = object.value & 1
                        if object.value != next[producer] { inOrder = false }
                        next[producer] = object.value + 2
                        received += 1
                    }
                    if got == 0, !deadline.wait(&spins) { break }
                }
                result.value = (received, inOrder)
            }
            finished = runThreads(bodies)
            withExtendedLifetime(queue) {}
        }
        #expect(finished)
        #expect(result.value.received == 2 * perProducer)
        #expect(result.value.inOrder)
        #expect(tracker.deinits == 2 * perProducer)
    }
}
