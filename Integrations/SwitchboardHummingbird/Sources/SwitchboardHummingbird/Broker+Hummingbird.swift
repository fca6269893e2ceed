import Hummingbird
import Logging
import Switchboard

extension Broker {
    /// A broker whose shards serve a Hummingbird router on the broker's one port: plain HTTP
    /// requests go to the router (through ``HummingbirdWorkerHandler``), WebSocket upgrades on
    /// `configuration.webSocket.paths` go to `webSocket`'s handlers.
    ///
    /// ```swift
    /// let router = Router(context: SwitchboardRequestContext.self)
    /// router.get("/hello") { _, _ in "hello" }
    /// var configuration = BrokerConfiguration()
    /// configuration.webSocket.paths = ["/ws"]
    /// let broker = Broker(router: router, configuration: configuration, logger: app.logger) { ChatHandler($0) }
    /// // The broker is a swift-service-lifecycle Service: run it with the app's other services.
    /// try await ServiceGroup(services: [broker, MetricsExporter(broker: broker)],
    ///                        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    /// ```
    ///
    /// - Parameters:
    ///   - router: built once here (`buildResponder()`); routes added later are not served.
    ///   - logger: the application's logger; requests log through it with `hb.request.id` and `shard`.
    ///   - maxResponseBodyBytes: a response body past this is answered 500 instead (default 16 MiB).
    ///   - streamRequestBodiesOverBytes: request bodies declared larger (and chunked ones) reach
    ///     the routes as a stream, read as they arrive; nil buffers every body whole.
    ///   - webSocket: makes each shard's WebSocket handler; nil refuses every upgrade (404).
    public convenience init<Builder: HTTPResponderBuilder>(
        router: Builder,
        configuration: BrokerConfiguration,
        logger: Logger = Logger(label: "switchboard"),
        maxResponseBodyBytes: Int = 16 << 20,
        streamRequestBodiesOverBytes: Int? = 65_536,
        webSocket: (@Sendable (ShardContext) -> WorkerHandler)? = nil
    ) where Builder.Responder.Context: InitializableFromSource<SwitchboardRequestContextSource> {
        let responder = router.buildResponder()
        self.init(configuration: configuration, logger: logger) { context in
            HummingbirdWorkerHandler(context: context, responder: responder, maxResponseBodyBytes: maxResponseBodyBytes,
                                     streamRequestBodiesOverBytes: streamRequestBodiesOverBytes,
                                     webSocket: webSocket?(context))
        }
    }
}
