import CoreMetrics
import Hummingbird
import Logging
import NIOCore
import Switchboard
import SwitchboardHummingbird

/// The REST side, generic over the context so that the same routes run on one port (served by
/// Switchboard's shards) or two (Hummingbird's own server with `BrokerMiddleware`).
func addChatRoutes<Context: BrokerRequestContext>(to router: Router<Context>) {
    // Publish to a room: every WebSocket in it receives "<api> TEXT".
    router.post("/rooms/:room/messages") { request, context -> Response in
        let room = try context.parameters.require("room")
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        guard body.readableBytes > 0 else { throw HTTPError(.badRequest, message: "empty message") }
        guard case .queued = context.broker.publish(ChatRoom.channel(room), .text("<api> " + String(buffer: body))) else {
            throw HTTPError(.serviceUnavailable, message: "broker busy")
        }
        return Response(status: .accepted, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"room":"\#(room)","bytes":\#(body.readableBytes)}"#)))
    }
    // An upload read as it arrives (large and chunked bodies are streamed by the shard, with
    // backpressure): only its size is kept.
    router.post("/uploads") { request, _ -> Response in
        var bytes = 0
        var parts = 0
        for try await buffer in request.body {
            bytes += buffer.readableBytes
            parts += 1
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"bytes":\#(bytes),"parts":\#(parts)}"#)))
    }
    // How many sockets are in a room now (exact, over every shard).
    router.get("/rooms/:room/members") { _, context -> String in
        let room = try context.parameters.require("room")
        return "\(try await context.broker.subscriberCount(ChatRoom.channel(room)))\n"
    }
}

/// The WebSocket side, a Switchboard handler (one per shard): `/ws?room=lobby&name=ada` joins
/// the room; each text message is published to it as "<ada> TEXT".
final class ChatRoom: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }

    static func channel(_ room: some StringProtocol) -> ChannelName { ChannelName("room:\(room)") }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        let query = Dictionary(request.query.split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
            .filter { $0.count == 2 }.map { ($0[0], $0[1]) }, uniquingKeysWith: { first, _ in first })
        guard let room = query["room"], context.subscribe(socketId, Self.channel(room)) == .subscribed else {
            return .reject(.text("a room is required: /ws?room=NAME&name=YOU\n", status: .badRequest))
        }
        return .accept(token: Array("\(room)\n\(query["name"] ?? "anonymous")".utf8))
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { return }
        let parts = String(decoding: token ?? [], as: UTF8.self).split(separator: "\n", maxSplits: 1)
        guard parts.count == 2 else { return }
        context.publish(Self.channel(parts[0]), .text("<\(parts[1])> \(text)"))
    }
}

/// One port: the broker's shards serve the router and the WebSockets on `/ws`; the broker and
/// its metrics export run in the application's service group.
func makeChatApplication(configuration: BrokerConfiguration, logger: Logger,
                         metricsFactory: any MetricsFactory = MetricsSystem.factory) -> SwitchboardApplication {
    let router = Router(context: SwitchboardRequestContext.self)
    addChatRoutes(to: router)
    var configuration = configuration
    configuration.webSocket.paths = ["/ws"]
    return SwitchboardApplication(router: router, configuration: configuration, logger: logger,
                                  metricsFactory: metricsFactory) { ChatRoom($0) }
}

/// Two ports: Hummingbird's own server answers HTTP on `httpPort`; the broker (a service of
/// the application, started and stopped with it) serves the WebSockets on its own port.
/// `onServerRunning` gets the HTTP port once Hummingbird's server listens (useful with port 0).
func makeTwoPortChatApplication(httpPort: Int, configuration: BrokerConfiguration, logger: Logger,
                                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> (some ApplicationProtocol, Broker) {
    var configuration = configuration
    configuration.webSocket.paths = ["/ws"]
    let broker = Broker(configuration: configuration, logger: logger) { ChatRoom($0) }
    let router = Router(context: SwitchboardAppRequestContext.self)
    router.add(middleware: BrokerMiddleware(broker))
    addChatRoutes(to: router)
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: httpPort)),
                          services: [broker], onServerRunning: { await onServerRunning($0.localAddress?.port ?? 0) },
                          logger: logger)
    return (app, broker)
}
