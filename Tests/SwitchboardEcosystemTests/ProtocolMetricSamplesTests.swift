import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The protocols' counters reach a swift-metrics backend through `additionalMetricSamples`, and
/// `/metrics` prints them exactly as the protocols' own text did.
@Suite("protocol metric samples", .serialized)
struct ProtocolMetricSamplesTests {
    @Test func rpcCountersReachTheBackendAndTheText() throws {
        let rpc = RPCServer { _ in }
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 1
        let broker = Broker(configuration: c, logger: .discarding, handlerFactory: rpc.handlerFactory())
        // As switchboard-rpc-example mounts it.
        broker.additionalMetricSamples = { rpc.metrics.samples }
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 0) }

        let client = try TestClient(port: broker.port)
        #expect(try client.upgrade(path: "/").status == 101)
        try client.sendText("not json")
        // Frames in order: whatever the node sends first (init), then the protocol error.
        var answer = ""
        for _ in 0..<4 where !answer.contains("notJSON") { answer = try client.readFrame().text }
        #expect(answer.contains(#""reason":"notJSON""#), "\(answer)")

        let factory = TestMetricsFactory()
        MetricsExporter(broker: broker, factory: factory).export()
        #expect(factory.counter("switchboard_rpc_malformed_total", [("reason", "notJSON")]) == 1)
        #expect(factory.counter("switchboard_rpc_malformed_total", [("reason", "tooDeep")]) == 0)
        #expect(factory.counter("switchboard_rpc_client_requests_total") == 0)
        #expect(factory.gauge("switchboard_rpc_nodes") == 1)

        // The text is the one `prometheusText` printed before the samples existed.
        let text = broker.metricsText()
        #expect(text.hasSuffix(rpc.metrics.prometheusText))
        #expect(text.contains("# HELP switchboard_rpc_nodes RPC nodes connected now (gauge)\n# TYPE switchboard_rpc_nodes gauge\nswitchboard_rpc_nodes 1\n"))
        #expect(text.contains("# HELP switchboard_rpc_malformed_total Malformed messages answered with a protocol error, by reason\n# TYPE switchboard_rpc_malformed_total counter\nswitchboard_rpc_malformed_total{reason=\"invalidUTF8\"} 0\nswitchboard_rpc_malformed_total{reason=\"notJSON\"} 1\n"))
        #expect(text.filter { $0 == "#" }.count == 2 * text.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }.count)
    }

    @Test func broadcasterSamplesRenderAsItsText() {
        let metrics = BroadcasterMetrics()
        metrics.connections.increment()
        metrics.publishesREST.increment(by: 3)
        metrics.unknownMethod.increment()
        let samples = metrics.samples
        let connections = samples.first { $0.name == "switchboard_broadcaster_connections" }
        #expect(connections?.kind == .gauge && connections?.value == 1)
        #expect(samples.first { $0.name == "switchboard_broadcaster_publishes_rest_total" }?.value == 3)
        let text = metrics.render()
        #expect(text.contains("# HELP switchboard_broadcaster_connections Open broadcaster WebSockets\n# TYPE switchboard_broadcaster_connections gauge\nswitchboard_broadcaster_connections 1\n"))
        #expect(text.contains("switchboard_broadcaster_errors_total{method=\"unknown\",code=\"NotFound\"} 1\n"))
        #expect(text.contains("# TYPE switchboard_broadcaster_publishes_rest_total counter\nswitchboard_broadcaster_publishes_rest_total 3\n"))
        #expect(text.filter { $0 == "#" }.count == 2 * text.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }.count)
    }
}
