import CoreMetrics
import Synchronization

/// A swift-metrics backend for tests: remembers every metric by label and dimensions, with
/// its counter total or last recorded value.
final class TestMetricsFactory: MetricsFactory {
    struct Key: Hashable, CustomStringConvertible {
        let label: String
        let dimensions: [String]
        init(_ label: String, _ dimensions: [(String, String)]) {
            self.label = label
            self.dimensions = dimensions.map { "\($0.0)=\($0.1)" }
        }
        var description: String { "\(label)\(dimensions)" }
    }

    final class TestCounter: CounterHandler, Sendable {
        let total = Atomic<Int64>(0)
        func increment(by amount: Int64) { total.add(amount, ordering: .relaxed) }
        func reset() { total.store(0, ordering: .relaxed) }
    }

    final class TestRecorder: RecorderHandler, Sendable {
        let last = Mutex<Double?>(nil)
        func record(_ value: Int64) { last.withLock { $0 = Double(value) } }
        func record(_ value: Double) { last.withLock { $0 = value } }
    }

    final class TestTimer: TimerHandler, Sendable {
        func recordNanoseconds(_ duration: Int64) {}
    }

    private let counters = Mutex<[Key: TestCounter]>([:])
    private let recorders = Mutex<[Key: TestRecorder]>([:])

    func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
        counters.withLock { all in
            if let existing = all[Key(label, dimensions)] { return existing }
            let made = TestCounter()
            all[Key(label, dimensions)] = made
            return made
        }
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
        recorders.withLock { all in
            if let existing = all[Key(label, dimensions)] { return existing }
            let made = TestRecorder()
            all[Key(label, dimensions)] = made
            return made
        }
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler { TestTimer() }
    func destroyCounter(_ handler: CounterHandler) {}
    func destroyRecorder(_ handler: RecorderHandler) {}
    func destroyTimer(_ handler: TimerHandler) {}

    /// A counter's total, nil when it was never created.
    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64? {
        counters.withLock { $0[Key(label, dimensions)]?.total.load(ordering: .relaxed) }
    }

    /// A gauge's last value, nil when it was never created or recorded.
    func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> Double? {
        recorders.withLock { $0[Key(label, dimensions)]?.last.withLock { $0 } }
    }

    /// Every counter label created with a `shard` dimension, per shard.
    func counterLabels(shard: Int) -> Set<String> {
        counters.withLock { Set($0.keys.filter { $0.dimensions == ["shard=\(shard)"] }.map(\.label)) }
    }
}
