import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// A route that streams request bodies under its prefix (answering at once, without reading,
/// with what it was given) and passes `/up/pass` on to the next route.
private final class StreamingRoute: WorkerHandler {
    let name: String
    init(_ name: String) { self.name = name }

    func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery { .streamed }

    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        if request.path == "/up/pass" && name == "first" { return .notHandled }
        guard let stream = request.bodyStream else {
            return .response(.text("\(name): buffered \(request.body.count) B"))
        }
        return .response(.text("\(name): streamed, \(stream.expectedLength.map(String.init) ?? "?") B to come"))
    }
}

/// A route that takes whole bodies (the default delivery).
private final class BufferedRoute: WorkerHandler {
    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        .response(.text("buffered: \(request.body.count) B"))
    }
}

@Suite("RoutingWorkerHandler passes body delivery to its routes (real sockets)")
struct RoutingBodyDeliveryTests {
    func server() throws -> Broker {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 1
        c.sendDateHeader = false
        let broker = Broker(configuration: c, logger: .discarding) { _ in
            RoutingWorkerHandler(routes: [
                .init(paths: ["/up/"], handler: StreamingRoute("first")),
                .init(paths: ["/up/"], handler: StreamingRoute("second")),
                .init(paths: ["*"], handler: BufferedRoute()),
            ])
        }
        try broker.start()
        return broker
    }

    func post(_ port: Int, _ path: String, bodyBytes: Int) throws -> TestResponse {
        let c = try TestClient(port: port)
        try c.send("POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: \(bodyBytes)\r\n\r\n")
        try c.send([UInt8](repeating: 0x61, count: bodyBytes))
        return try c.readResponse()
    }

    @Test("the first matching route's .streamed reaches it: the body comes as a stream")
    func streamedRoute() throws {
        let broker = try server()
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let r = try post(broker.port, "/up/file", bodyBytes: 100_000)
        #expect(r.status == 200)
        #expect(r.bodyText == "first: streamed, 100000 B to come")
    }

    @Test("a streamed request passed on goes to the next streaming route, never to a buffered one")
    func passedOn() throws {
        let broker = try server()
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let r = try post(broker.port, "/up/pass", bodyBytes: 10)
        #expect(r.bodyText == "second: streamed, 10 B to come")
    }

    @Test("a path no streaming route matches keeps the buffered delivery")
    func bufferedRoute() throws {
        let broker = try server()
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let r = try post(broker.port, "/other", bodyBytes: 1000)
        #expect(r.bodyText == "buffered: 1000 B")
    }
}
