import CoreMetrics
import ServiceLifecycle
import Synchronization

/// Reports a broker's counters and gauges to swift-metrics (the host's backend: Prometheus,
/// StatsD, OpenTelemetry...), without touching the hot path.
///
/// The shards keep counting in their own plain per-shard counters (`SwitchboardIO.Counter`: a
/// relaxed load and store, no lock, no shared cache line). The exporter reads them on its
/// own schedule and reports: for a counter, the increase since its previous export
/// (`CoreMetrics.Counter.increment(by:)`); for a gauge, the value now (`Gauge.record`). Every
/// per-shard value carries the `shard` dimension; labels are the Prometheus names that
/// `/metrics` prints (`switchboard_bytes_sent_total`...).
///
/// Run it as a `Service` next to the broker (one export every `intervalMilliseconds`, and a
/// last one at shutdown), or call `export()` yourself when the backend pulls. List it before
/// the broker in the `ServiceGroup`: graceful shutdown runs in reverse order, so the broker
/// drains first and the last export includes the drain.
///
/// Thread rules: `export()` may be called from any thread; calls are serialized by a mutex
/// that only exporters take (never a shard).
public final class MetricsExporter: Service, Sendable {
    /// Time between two exports when running as a service.
    public let intervalMilliseconds: Int
    private let source: @Sendable () -> [MetricSample]
    private let factory: any MetricsFactory
    private let state = Mutex(State())

    private struct Key: Hashable {
        let name: String
        let dimensions: [MetricSample.Dimension]
    }

    private struct State {
        /// Each counter with the value it had at its last export.
        var counters: [Key: (metric: CoreMetrics.Counter, exported: Int)] = [:]
        var gauges: [Key: Gauge] = [:]
    }

    /// Exports `broker.metricSamples()` (every broker counter, plus the protocol's own samples
    /// set in `additionalMetricSamples`).
    /// - Parameters:
    ///   - intervalMilliseconds: time between exports when run as a service (>= 1).
    ///   - factory: the metrics backend; default: the one bootstrapped in `MetricsSystem`.
    public convenience init(broker: Broker, intervalMilliseconds: Int = 10_000,
                            factory: any MetricsFactory = MetricsSystem.factory) {
        self.init(intervalMilliseconds: intervalMilliseconds, factory: factory) { [weak broker] in
            broker?.metricSamples() ?? []
        }
    }

    /// Exports whatever `source` returns (any thread calls it).
    public init(intervalMilliseconds: Int = 10_000, factory: any MetricsFactory = MetricsSystem.factory,
                source: @escaping @Sendable () -> [MetricSample]) {
        precondition(intervalMilliseconds >= 1, "intervalMilliseconds must be >= 1")
        self.intervalMilliseconds = intervalMilliseconds
        self.factory = factory
        self.source = source
    }

    /// Reads every sample now and reports it. A counter that went down (its broker was
    /// replaced) is reported as having restarted from zero, as Prometheus' `rate` reads a reset.
    public func export() {
        let samples = source()
        state.withLock { state in
            for sample in samples {
                let key = Key(name: sample.name, dimensions: sample.dimensions)
                switch sample.kind {
                case .counter:
                    let entry = state.counters[key] ?? (CoreMetrics.Counter(label: sample.name, dimensions: Self.pairs(sample), factory: factory), 0)
                    let delta = sample.value >= entry.exported ? sample.value - entry.exported : sample.value
                    if delta > 0 { entry.metric.increment(by: delta) }
                    state.counters[key] = (entry.metric, sample.value)
                case .gauge:
                    let gauge = state.gauges[key] ?? Gauge(label: sample.name, dimensions: Self.pairs(sample), factory: factory)
                    gauge.record(sample.value)
                    state.gauges[key] = gauge
                }
            }
        }
    }

    /// Exports every `intervalMilliseconds` until graceful shutdown or cancellation, then once
    /// more (so the last counts before a stop reach the backend).
    public func run() async throws {
        while true {
            export()
            let interval = Duration.milliseconds(intervalMilliseconds)
            // nil: graceful shutdown; a throw: cancellation. Either ends the loop.
            let slept: Void? = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            if slept == nil { break }
        }
        export()
    }

    private static func pairs(_ sample: MetricSample) -> [(String, String)] {
        sample.dimensions.map { ($0.name, $0.value) }
    }
}
