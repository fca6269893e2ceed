import Logging
import Switchboard
import SwitchboardProtocols

/// The `switchboard` executable's configuration: the core's section and one section per
/// built-in protocol, each owned (declared, parsed, validated) by its module.
public struct SwitchboardServerConfiguration: Sendable {
    public var broker = BrokerConfiguration()
    public var connectionBroker = ConnectionBrokerOptions()

    /// The sections, in the order of the example file and of `--print-config-keys`.
    public static let sections: [any ConfigurationSection.Type] = [BrokerConfiguration.self, ConnectionBrokerOptions.self]

    public init() {}

    /// Every layer applied to every section, each validated.
    public init(layers: LayeredConfiguration) throws(ConfigurationError) {
        broker = try layers.resolve(BrokerConfiguration())
        connectionBroker = try layers.resolve(ConnectionBrokerOptions())
        // One limit, not two: the protocol refuses what the WebSocket layer would.
        connectionBroker.maxMessageBytes = broker.webSocket.maxMessageBytes
    }

    /// `Config/switchboard.example.conf`: every key at its value here.
    public func exampleFile() -> String {
        ConfigurationFile.example([("broker", broker), ("connection-broker protocol", connectionBroker)])
    }

    /// A broker serving the built-in protocols: the connection-broker protocol on
    /// `connectionBroker.paths` and on the subprotocol `connection-broker`. Its counters are in
    /// `/metrics` and in `metricSamples()`.
    public func makeBroker(logger: Logger) -> Broker {
        let shared = ConnectionBroker(options: connectionBroker)
        let factory = shared.handlerFactory()
        let paths = connectionBroker.paths
        let broker = Broker(configuration: broker, logger: logger) { context in
            RoutingWorkerHandler(routes: [
                .init(paths: paths, subprotocol: "connection-broker", handler: factory(context)),
            ])
        }
        broker.additionalMetricSamples = { shared.metrics.samples }
        return broker
    }
}

extension ConnectionBrokerMetrics {
    /// The counters as samples named `switchboard_cb_...`, process-wide (no shard dimension).
    public var samples: [MetricSample] {
        all.map { MetricSample(name: "switchboard_" + $0.name, help: $0.help, value: $0.value) }
    }
}
