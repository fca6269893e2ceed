import Logging
import ServiceLifecycle
import Switchboard
import SwitchboardCommandLine
import SwitchboardIO
import SwitchboardTestSupport
import Synchronization
import Testing

/// A handler with every default: health and metrics routes, WebSocket upgrades accepted.
final class DefaultsWorker: WorkerHandler {}

@Suite("swift-metrics export", .serialized)
struct MetricsExportTests {
    func startBroker(shards: Int, mallocStatisticsIntervalMilliseconds: Int = 0) throws -> Broker {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = shards
        c.mallocStatisticsIntervalMilliseconds = mallocStatisticsIntervalMilliseconds
        let broker = Broker(configuration: c, logger: .discarding) { _ in DefaultsWorker() }
        try broker.start()
        return broker
    }

    /// Sends `count` requests for /health, one connection each, and reads every answer.
    func health(_ broker: Broker, count: Int) throws {
        for _ in 0..<count {
            let client = try TestClient(port: broker.port)
            try client.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
    }

    func sampleValue(_ broker: Broker, _ name: String, shard: Int?) -> Int? {
        let dimensions = shard.map { [MetricSample.Dimension("shard", String($0))] } ?? []
        return broker.metricSamples().first { $0.name == name && $0.dimensions == dimensions }?.value
    }

    @Test func countersAndGaugesReachTheBackendWithShardLabels() throws {
        let broker = try startBroker(shards: 2)
        defer { broker.shutdown(graceMilliseconds: 0) }
        let factory = TestMetricsFactory()
        let exporter = MetricsExporter(broker: broker, factory: factory)

        try health(broker, count: 5)
        exporter.export()
        // Each request was answered before its count was read; the counters are exact.
        let requests0 = try #require(factory.counter("switchboard_http_requests_total", [("shard", "0")]))
        let requests1 = try #require(factory.counter("switchboard_http_requests_total", [("shard", "1")]))
        #expect(requests0 + requests1 == 5)
        #expect(Int(requests0) == sampleValue(broker, "switchboard_http_requests_total", shard: 0))
        // Process-wide acceptor counter: no dimension.
        #expect(factory.counter("switchboard_accepted_total") == 5)
        // Gauges carry the shard too.
        #expect(factory.gauge("switchboard_connections_open", [("shard", "0")]) != nil)
        #expect(factory.gauge("switchboard_ws_open", [("shard", "1")]) == 0)

        // A second export reports only the increase: totals match the broker's counters again.
        try health(broker, count: 3)
        exporter.export()
        let again0 = try #require(factory.counter("switchboard_http_requests_total", [("shard", "0")]))
        let again1 = try #require(factory.counter("switchboard_http_requests_total", [("shard", "1")]))
        #expect(again0 + again1 == 8)
        #expect(Int(again0) == sampleValue(broker, "switchboard_http_requests_total", shard: 0))
        #expect(Int(again1) == sampleValue(broker, "switchboard_http_requests_total", shard: 1))
        #expect(factory.counter("switchboard_accepted_total") == 8)
        exporter.export()
        #expect(factory.counter("switchboard_accepted_total") == 8, "an export without new events adds nothing")
    }

    @Test func everyBrokerCounterIsExportedForEveryShard() throws {
        let broker = try startBroker(shards: 2)
        defer { broker.shutdown(graceMilliseconds: 0) }
        let factory = TestMetricsFactory()
        MetricsExporter(broker: broker, factory: factory).export()
        // Every name /metrics prints per shard is a counter or a gauge in the backend.
        let text = broker.metricsText()
        for shard in 0..<2 {
            let printed = text.split(separator: "\n").filter { $0.contains("{shard=\"\(shard)\"}") }
            #expect(printed.count > 40, "the per-shard families")
            for line in printed {
                let name = String(line.prefix { $0 != "{" })
                let found = name.hasSuffix("_total")
                    ? factory.counter(name, [("shard", String(shard))]) != nil
                    : factory.gauge(name, [("shard", String(shard))]) != nil
                #expect(found, "\(name) shard \(shard)")
            }
        }
    }

    @Test func prometheusTextKeepsItsFormat() throws {
        let broker = try startBroker(shards: 2)
        defer { broker.shutdown(graceMilliseconds: 0) }
        try health(broker, count: 1)
        let text = broker.metricsText()
        let lines = text.split(separator: "\n").map(String.init)
        // One HELP and one TYPE per family, followed by one sample per shard.
        let i = try #require(lines.firstIndex(of: "# TYPE switchboard_http_requests_total counter"))
        #expect(lines[i - 1] == "# HELP switchboard_http_requests_total Complete HTTP requests received")
        #expect(lines[i + 1].hasPrefix("switchboard_http_requests_total{shard=\"0\"} "))
        #expect(lines[i + 2].hasPrefix("switchboard_http_requests_total{shard=\"1\"} "))
        #expect(lines.contains("# TYPE switchboard_connections_open gauge"))
        #expect(lines.contains("switchboard_accepted_total 1"))
        #expect(lines.filter { $0 == "# TYPE switchboard_http_requests_total counter" }.count == 1)
    }

    /// `switchboard_malloc_in_use_bytes` and `switchboard_malloc_free_bytes`: process-wide
    /// gauges (no shard label: malloc's arenas serve every thread) that follow the heap.
    /// 64 chunks of 16 KiB are allocated and written (in use rises by their bytes), then every
    /// other one is freed: each freed chunk lies between chunks still in use, so it stays in
    /// malloc as a free chunk (free rises by their bytes, in use falls by them). The broker is
    /// idle and the suite serialized, so other threads move the figures by little; the bounds
    /// leave 1/8 of each step for that.
    @Test func mallocGaugesFollowTheHeap() throws {
        let broker = try startBroker(shards: 1)
        defer { broker.shutdown(graceMilliseconds: 0) }
        func gauges() throws -> (inUse: Int, free: Int) {
            let samples = broker.metricSamples()
            let inUse = try #require(samples.first { $0.name == "switchboard_malloc_in_use_bytes" })
            let free = try #require(samples.first { $0.name == "switchboard_malloc_free_bytes" })
            #expect(inUse.kind == .gauge && free.kind == .gauge)
            #expect(inUse.dimensions.isEmpty && free.dimensions.isEmpty)
            return (inUse.value, free.value)
        }
        let chunkBytes = 16 << 10
        let chunks = 64
        let before = try gauges()
        let pointers = (0..<chunks).map { _ in
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 16)
            pointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: chunkBytes)
            return pointer
        }
        let allocated = try gauges()
        let allocatedBytes = chunks * chunkBytes
        #expect(allocated.inUse - before.inUse >= allocatedBytes * 7 / 8, "in use \(before.inUse) -> \(allocated.inUse)")
        for (index, pointer) in pointers.enumerated() where index % 2 == 0 { pointer.deallocate() }
        let freed = try gauges()
        let freedBytes = allocatedBytes / 2
        #expect(allocated.inUse - freed.inUse >= freedBytes * 7 / 8, "in use \(allocated.inUse) -> \(freed.inUse)")
        #expect(freed.free - allocated.free >= freedBytes * 7 / 8, "free \(allocated.free) -> \(freed.free)")
        for (index, pointer) in pointers.enumerated() where index % 2 == 1 { pointer.deallocate() }
        let text = broker.metricsText()
        #expect(text.contains("# TYPE switchboard_malloc_free_bytes gauge\nswitchboard_malloc_free_bytes "))
        #expect(text.contains("# TYPE switchboard_malloc_in_use_bytes gauge\nswitchboard_malloc_in_use_bytes "))
    }

    /// `/metrics` is answered on a shard thread for any client that asks: glibc's `mallinfo2`
    /// (which locks every arena) runs once per `metrics_malloc_interval_ms`, however many
    /// scrapes come in, and again once the interval has passed.
    @Test func mallocGaugesAreWalkedOncePerInterval() throws {
        // An hour: no walk in this test can be due to the interval passing by itself.
        let broker = try startBroker(shards: 1, mallocStatisticsIntervalMilliseconds: 3_600_000)
        defer { broker.shutdown(graceMilliseconds: 0) }
        #expect(broker.mallocStatistics.walkCount == 0)
        for _ in 0..<20 {
            let client = try TestClient(port: broker.port)
            try client.send("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self).contains("\nswitchboard_malloc_in_use_bytes "))
        }
        _ = broker.metricSamples()
        #expect(broker.mallocStatistics.walkCount == 1, "20 scrapes and one direct read walked the arenas \(broker.mallocStatistics.walkCount) times")

        // The cache itself, with a clock the test moves: fresh within the interval, walked
        // again at exactly the interval, and a clock behind the reading walks again too.
        let cache = MallocStatisticsCache(intervalMilliseconds: 1_000)
        let first = cache.statistics(nowNanoseconds: 5_000_000_000)
        #expect(cache.walkCount == 1 && first.inUseBytes > 0)
        _ = cache.statistics(nowNanoseconds: 5_999_999_999)
        #expect(cache.walkCount == 1)
        _ = cache.statistics(nowNanoseconds: 6_000_000_000)
        #expect(cache.walkCount == 2)
        _ = cache.statistics(nowNanoseconds: 1)
        #expect(cache.walkCount == 3)
        let uncached = MallocStatisticsCache(intervalMilliseconds: 0)
        _ = uncached.statistics(nowNanoseconds: 7)
        _ = uncached.statistics(nowNanoseconds: 7)
        #expect(uncached.walkCount == 2)
    }

    @Test func mallocIntervalIsValidated() {
        var c = BrokerConfiguration()
        #expect(c.mallocStatisticsIntervalMilliseconds == 1_000)
        for bad in [-1, 3_600_001] {
            c.mallocStatisticsIntervalMilliseconds = bad
            #expect(c.validate() == "metrics_malloc_interval_ms must be 0...3600000", "\(bad)")
        }
        for good in [0, 3_600_000] {
            c.mallocStatisticsIntervalMilliseconds = good
            #expect(c.validate() == nil, "\(good)")
        }
    }

    @Test func protocolSamplesAreExportedAndPrinted() throws {
        var configuration = SwitchboardServerConfiguration()
        configuration.broker.host = "127.0.0.1"
        configuration.broker.port = 0
        configuration.broker.io.shardCount = 1
        let broker = configuration.makeBroker(logger: .discarding)
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 0) }
        // A connection-broker client registers: counted by the protocol, not per shard.
        let client = try TestClient(port: broker.port)
        #expect(try client.upgrade(path: "/").status == 101)
        try client.sendText(#"{"type":"register","id":1,"role":"worker"}"#)
        let reply = try client.readFrame()
        #expect(reply.text.contains("registered"), "\(reply.text)")

        let factory = TestMetricsFactory()
        MetricsExporter(broker: broker, factory: factory).export()
        #expect(factory.counter("switchboard_cb_registrations_total") == 1)
        #expect(factory.gauge("switchboard_cb_registered_connections") == 1)
        let text = broker.metricsText()
        #expect(text.contains("# TYPE switchboard_cb_registrations_total counter\nswitchboard_cb_registrations_total 1\n"))
    }

    @Test func exporterServiceExportsOnItsIntervalAndOnceMoreAtShutdown() async throws {
        let factory = TestMetricsFactory()
        let value = SourceValue()
        let exporter = MetricsExporter(intervalMilliseconds: 5, factory: factory) {
            [MetricSample(name: "demo_events_total", help: "demo", value: value.value)]
        }
        let group = ServiceGroup(services: [exporter], gracefulShutdownSignals: [], logger: .discarding)
        let run = Task { try await group.run() }
        value.increment(by: 7)
        // Wait for a periodic export to carry the value (bounded).
        let deadline = ContinuousClock.now + .seconds(10)
        while factory.counter("demo_events_total") != 7 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(factory.counter("demo_events_total") == 7)
        value.increment(by: 2)
        await group.triggerGracefulShutdown()
        try await run.value
        #expect(factory.counter("demo_events_total") == 9, "the last export at shutdown")
    }

    @Test func aCounterThatWentBackIsReadAsARestart() {
        let factory = TestMetricsFactory()
        let source = SourceValue()
        let exporter = MetricsExporter(factory: factory) { [MetricSample(name: "restarts_total", help: "demo", value: source.value)] }
        source.set(10)
        exporter.export()
        source.set(4)
        exporter.export()
        #expect(factory.counter("restarts_total") == 14)
    }
}

/// A value a test changes and an exporter's source reads.
final class SourceValue: Sendable {
    private let storage = Atomic<Int>(0)
    var value: Int { storage.load(ordering: .relaxed) }
    func increment(by amount: Int) { storage.add(amount, ordering: .relaxed) }
    func set(_ value: Int) { storage.store(value, ordering: .relaxed) }
}

@Suite("swift-metrics export in a ServiceGroup", .serialized)
struct MetricsExportServiceTests {
    /// Exporter before broker: the broker drains first, and the exporter's last export carries
    /// the closes of the drain.
    @Test func theLastExportSeesTheDrainedBroker() async throws {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 1
        let broker = Broker(configuration: c, logger: .discarding) { _ in DefaultsWorker() }
        let factory = TestMetricsFactory()
        // An interval far beyond the test: only the first export and the last one happen.
        let exporter = MetricsExporter(broker: broker, intervalMilliseconds: 600_000, factory: factory)
        let group = ServiceGroup(services: [exporter, broker], gracefulShutdownSignals: [], logger: .discarding)
        let run = Task { try await group.run() }
        var port = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while port == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
            port = broker.port
        }
        let client = try TestClient(port: port)
        #expect(try client.upgrade(path: "/").status == 101)
        await group.triggerGracefulShutdown()
        #expect(try client.readFrame().closeCode == 1001)
        try client.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        #expect(client.isClosedByServer())
        try await run.value
        #expect(factory.counter("switchboard_ws_upgrades_total", [("shard", "0")]) == 1)
        #expect(factory.counter("switchboard_connections_closed_total", [("shard", "0")]) == 1)
        #expect(factory.gauge("switchboard_ws_open", [("shard", "0")]) == 0)
    }
}
