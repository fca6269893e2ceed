import Hummingbird
import Logging
import Switchboard

/// What a route can reach besides its request: the ``Broker`` (publish to a channel, send to a
/// socket), whichever server answered the request.
///
/// Write routes generic over it and the same route collection serves both modes: one port
/// (``SwitchboardRequestContext``, Switchboard's shards serve the router) and two ports
/// (``SwitchboardAppRequestContext``, Hummingbird's own server with ``BrokerMiddleware``).
///
/// ```swift
/// router.post("/rooms/:room/messages") { request, context in
///     let room = try context.parameters.require("room")
///     let text = try await String(buffer: request.body.collect(upTo: 4096))
///     return context.broker.publish(ChannelName(room), .text(text)).isQueued ? .accepted : .serviceUnavailable
/// }
/// ```
public protocol BrokerRequestContext: RequestContext {
    /// The broker serving this application's WebSockets and channels.
    var broker: Broker { get }
}

/// What the one-port adapter gives the context of each request it serves.
public struct SwitchboardRequestContextSource: RequestContextSource, Sendable {
    /// The application's logger, with the request's `hb.request.id` and Switchboard's `shard`.
    public let logger: Logger
    public let broker: Broker
    /// The HTTP connection the request came on (its shard is `connection.shard`).
    public let connection: SocketID

    public init(logger: Logger, broker: Broker, connection: SocketID) {
        self.logger = logger
        self.broker = broker
        self.connection = connection
    }
}

/// The request context of a Hummingbird router served by Switchboard's shards (one port).
public struct SwitchboardRequestContext: BrokerRequestContext {
    public typealias Source = SwitchboardRequestContextSource
    public var coreContext: CoreRequestContextStorage
    public let broker: Broker
    /// The HTTP connection the request came on.
    public let connection: SocketID

    public init(source: SwitchboardRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        broker = source.broker
        connection = source.connection
    }
}

/// The request context for the two-port mode: Hummingbird's own server answers HTTP, and
/// ``BrokerMiddleware`` (added first to the router) hands each request the broker.
public struct SwitchboardAppRequestContext: BrokerRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``BrokerMiddleware``; nil only when the router lacks it (a setup error).
    public var brokerIfSet: Broker?

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        brokerIfSet = nil
    }

    public var broker: Broker {
        guard let broker = brokerIfSet else {
            preconditionFailure("SwitchboardAppRequestContext.broker: add BrokerMiddleware(broker) to the router first")
        }
        return broker
    }
}

/// Gives every request of a two-port application the broker (``SwitchboardAppRequestContext``).
public struct BrokerMiddleware: RouterMiddleware {
    public typealias Context = SwitchboardAppRequestContext
    public let broker: Broker

    public init(_ broker: Broker) { self.broker = broker }

    public func handle(_ request: Request, context: SwitchboardAppRequestContext,
                       next: (Request, SwitchboardAppRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        context.brokerIfSet = broker
        return try await next(request, context)
    }
}
