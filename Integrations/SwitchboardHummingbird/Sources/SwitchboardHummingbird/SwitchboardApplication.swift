import CoreMetrics
import Hummingbird
import Logging
import ServiceLifecycle
import Switchboard
import UnixSignals

/// The one-port counterpart of Hummingbird's `Application`: a Hummingbird router and
/// Switchboard's WebSockets on the broker's port, with the application's other services in
/// one `ServiceGroup` (started together, shut down gracefully together), the application's
/// logger, and the broker's metrics exported to the application's swift-metrics backend.
///
/// ```swift
/// var app = SwitchboardApplication(router: router, configuration: configuration, logger: logger) { ChatRoom($0) }
/// app.addServices(jobQueue, databasePool)
/// try await app.runService()        // SIGTERM/SIGINT: graceful shutdown of everything
/// ```
public struct SwitchboardApplication: Service {
    public let broker: Broker
    public let logger: Logger
    /// Run with the broker, in the same group (after it in the list: shut down before it).
    public private(set) var services: [any Service]

    /// - Parameters:
    ///   - metricsExportIntervalMilliseconds: how often the broker's counters reach the
    ///     swift-metrics backend bootstrapped in `MetricsSystem` (`metricsFactory` otherwise);
    ///     nil: no export (the `/metrics` route still answers).
    ///   - streamRequestBodiesOverBytes: request bodies declared larger (and chunked ones) reach
    ///     the routes as a stream (`for try await buffer in request.body`); nil buffers all.
    ///   - webSocket: makes each shard's WebSocket handler; nil refuses every upgrade (404).
    public init<Builder: HTTPResponderBuilder>(
        router: Builder,
        configuration: BrokerConfiguration,
        services: [any Service] = [],
        logger: Logger,
        maxResponseBodyBytes: Int = 16 << 20,
        streamRequestBodiesOverBytes: Int? = 65_536,
        metricsExportIntervalMilliseconds: Int? = 10_000,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        webSocket: (@Sendable (ShardContext) -> WorkerHandler)? = nil
    ) where Builder.Responder.Context: InitializableFromSource<SwitchboardRequestContextSource> {
        let broker = Broker(router: router, configuration: configuration, logger: logger,
                            maxResponseBodyBytes: maxResponseBodyBytes,
                            streamRequestBodiesOverBytes: streamRequestBodiesOverBytes, webSocket: webSocket)
        self.broker = broker
        self.logger = logger
        var all: [any Service] = [broker]
        if let interval = metricsExportIntervalMilliseconds {
            all.append(MetricsExporter(broker: broker, intervalMilliseconds: interval, factory: metricsFactory))
        }
        self.services = all + services
    }

    public mutating func addServices(_ services: any Service...) {
        self.services.append(contentsOf: services)
    }

    /// Runs every service in one group until graceful shutdown (of the task running it: use
    /// this inside another `ServiceGroup`) or until one fails.
    public func run() async throws {
        try await ServiceGroup(configuration: .init(services: services, logger: logger)).run()
    }

    /// Runs every service until SIGTERM or SIGINT, then shuts them all down gracefully.
    public func runService(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        try await ServiceGroup(services: services, gracefulShutdownSignals: gracefulShutdownSignals, logger: logger).run()
    }
}
