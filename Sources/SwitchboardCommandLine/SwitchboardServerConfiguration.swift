import Logging
import Switchboard
import SwitchboardProtocols

/// The `switchboard` executable's configuration: the core's section and one section per
/// built-in protocol, each owned (declared, parsed, validated) by its module.
public struct SwitchboardServerConfiguration: Sendable {
    public var broker = BrokerConfiguration()
    public var connectionBroker = ConnectionBrokerOptions()
    public var broadcaster = BroadcasterConfiguration()
    /// What `makeBroker` mounts when `broadcaster.enabled`: `broadcaster` with its key files
    /// read, made by `init(layers:)` (so that a missing PEM file stops start-up).
    public var broadcasterOptions: BroadcasterOptions?

    /// The sections, in the order of the example file and of `--print-config-keys`.
    public static let sections: [any ConfigurationSection.Type] = [
        BrokerConfiguration.self, ConnectionBrokerOptions.self, BroadcasterConfiguration.self,
    ]

    public init() {}

    /// Every layer applied to every section, each validated; the broadcaster's key files read.
    public init(layers: LayeredConfiguration) throws(ConfigurationError) {
        broker = try layers.resolve(BrokerConfiguration())
        connectionBroker = try layers.resolve(ConnectionBrokerOptions())
        // One limit, not two: the protocol refuses what the WebSocket layer would.
        connectionBroker.maxMessageBytes = broker.webSocket.maxMessageBytes
        broadcaster = try layers.resolve(BroadcasterConfiguration())
        if broadcaster.enabled {
            broadcasterOptions = try broadcaster.makeOptions { (path: String) throws(ConfigurationError) -> String in
                guard let pem = ConfigurationFile.read(path) else {
                    throw ConfigurationError(origin: nil, message: "cannot read \(path) (missing, unreadable or over \(ConfigurationFile.maxBytes) bytes)")
                }
                return pem
            }
        }
    }

    /// The `switchboard` executable's layers, lowest first: the file named by `--config`, the
    /// reference broadcaster's environment when compatibility mode is on
    /// (`BroadcasterConfiguration.compatibilityModeRequested`: started as `broadcaster` or with
    /// `SWITCHBOARD_BROADCASTER_COMPAT=1`), the `SWITCHBOARD_*` environment, the command line.
    public static func layers(_ options: ServerOptions, environment: [String: String],
                              executablePath: String) throws(ConfigurationError) -> LayeredConfiguration {
        var layers = LayeredConfiguration(sections: sections)
        if let path = options.configFile {
            try layers.addFile(try ConfigurationFile.contents(path), path: path)
        }
        if BroadcasterConfiguration.compatibilityModeRequested(executablePath: executablePath, environment: environment) {
            for setting in try BroadcasterConfiguration.referenceEnvironment(environment) {
                try layers.add(key: setting.key, value: setting.value, origin: .environment(variable: setting.variable))
            }
        }
        // The switch is not a key: keep it out of the "names no configuration key" warnings.
        var switchboardEnvironment = environment
        switchboardEnvironment[BroadcasterConfiguration.compatibilityVariable] = nil
        layers.addEnvironment(switchboardEnvironment)
        try options.addCommandLineLayer(to: &layers)
        return layers
    }

    /// `Config/switchboard.example.conf`: every key at its value here.
    public func exampleFile() -> String {
        ConfigurationFile.example([
            ("broker", broker), ("connection-broker protocol", connectionBroker), ("broadcaster protocol", broadcaster),
        ])
    }

    /// A broker serving the built-in protocols: the broadcaster protocol (when enabled) on its
    /// three routes, then the connection-broker protocol on `connectionBroker.paths` and on the
    /// subprotocol `connection-broker`. Their counters are in `/metrics` and in
    /// `metricSamples()` (so swift-metrics sees them).
    public func makeBroker(logger: Logger) -> Broker {
        let shared = ConnectionBroker(options: connectionBroker)
        let factory = shared.handlerFactory()
        let paths = connectionBroker.paths
        let broadcaster = broadcasterOptions.map { Broadcaster(options: $0) }
        let broker = Broker(configuration: broker, logger: logger) { context in
            var routes: [RoutingWorkerHandler.Route] = []
            if let broadcaster {
                // Exact paths (not a `{base}/` prefix): an empty base path must not swallow
                // every other route.
                let o = broadcaster.options
                routes.append(.init(paths: [o.webSocketPath, o.publishPath, o.healthPath], handler: broadcaster.makeHandler(context)))
            }
            routes.append(.init(paths: paths, subprotocol: "connection-broker", handler: factory(context)))
            return RoutingWorkerHandler(routes: routes)
        }
        broker.additionalMetricSamples = { shared.metrics.samples + (broadcaster?.metrics.samples ?? []) }
        return broker
    }
}

extension ConnectionBrokerMetrics {
    /// The counters as samples named `switchboard_cb_...`, process-wide (no shard dimension).
    public var samples: [MetricSample] {
        all.map { MetricSample(name: "switchboard_" + $0.name, help: $0.help, value: $0.value) }
    }
}
