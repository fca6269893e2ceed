import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A route that implements only the view method: echoes with a `view:` prefix frame first, so
/// the client sees which method answered.
private final class ViewRoute: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        context.send(socketId, .text("view:\(token.map { String(decoding: $0, as: UTF8.self) } ?? "-")"))
        context.send(socketId, message)
    }
}

/// A route that implements only the value method.
private final class ValueRoute: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision { .accept(token: Array("v".utf8)) }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        context.send(socketId, .text("value:\(token.map { String(decoding: $0, as: UTF8.self) } ?? "-")"))
        context.send(socketId, message)
    }
}

/// Issue 16 item 3: the broker calls a handler's view method; `RoutingWorkerHandler` forwards
/// the view, so a route implementing either method receives its sockets' messages.
@Suite("RoutingWorkerHandler passes WebSocket messages to routes with either method (real sockets)")
struct RoutingSocketMessageTests {
    /// One shard on 127.0.0.1, an ephemeral port, no deflate (frames compared byte for byte).
    static func configuration() -> BrokerConfiguration {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 1
        c.webSocket.perMessageDeflate = false
        return c
    }

    @Test("a view route and a value route behind one router: each gets its messages, exact bytes back")
    func bothMethods() throws {
        let c = Self.configuration()
        let broker = Broker(configuration: c, logger: .discarding) { context in
            RoutingWorkerHandler(routes: [
                .init(paths: ["/view"], handler: ViewRoute(context)),
                .init(paths: ["/value"], handler: ValueRoute(context)),
            ])
        }
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 1000) }
        for (path, answer) in [("/view", "view:-"), ("/value", "value:v")] {
            let client = try TestClient(port: broker.port)
            #expect(try client.upgrade(path: path).status == 101)
            try client.sendText("héllo")
            #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array(answer.utf8)), "\(path)")
            #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array("héllo".utf8)), "\(path)")
            try client.sendFrame(opcode: 2, payload: [0, 0xFF])
            #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array(answer.utf8)), "\(path)")
            #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 2, payload: [0, 0xFF]), "\(path)")
        }
    }

    @Test("the router's value method, called directly, reaches a route that implements only the view one")
    func valueCallReachesViewRoute() throws {
        let c = Self.configuration()
        // The router's value method is called by a handler wrapping it, for each message it gets.
        final class Wrapper: WorkerHandler {
            let router: RoutingWorkerHandler
            init(_ router: RoutingWorkerHandler) { self.router = router }
            func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
                router.handleUpgrade(request, socketId: socketId)
            }
            func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
                router.handleSocketMessage(message, socketId: socketId, token: token)
            }
        }
        let broker = Broker(configuration: c, logger: .discarding) { context in
            Wrapper(RoutingWorkerHandler(routes: [.init(paths: ["*"], handler: ViewRoute(context))]))
        }
        try broker.start()
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let client = try TestClient(port: broker.port)
        #expect(try client.upgrade(path: "/any").status == 101)
        try client.sendText("through a value")
        #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array("view:-".utf8)))
        #expect(try client.readFrame() == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array("through a value".utf8)))
    }
}
