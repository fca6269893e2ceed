import HBTestSupport
import Hummingbird
import Logging
import Switchboard
import SwitchboardHummingbird
import Testing

/// Replies to "whoami" with its socket's id, so a test can address it from a route.
final class WhoAmI: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        if message == .text("whoami") { context.send(socketId, .text("\(socketId.rawValue)")) }
    }
}

/// Implements only the lent-message method: echoes every message as it was lent, with a prefix
/// sent first, so a test sees that the adapter forwarded the view (not just the value method).
final class ViewEcho: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        context.send(socketId, .text("view \(message.isText ? "text" : "binary") \(message.count)"))
        context.send(socketId, message)
    }
}

struct Boom: Error {}

/// The adapter's edges, on a router of its own.
func adapterApplication(_ configuration: BrokerConfiguration, _ logger: Logger, _ metrics: TestMetricsFactory) -> SwitchboardApplication {
    let router = Router(context: SwitchboardRequestContext.self)
    router.get("/slow/:ms") { _, context -> String in
        try await Task.sleep(for: .milliseconds(try context.parameters.require("ms", as: Int.self)))
        return "slow"
    }
    router.get("/fast") { _, _ in "fast" }
    router.get("/boom") { _, _ -> String in throw Boom() }
    router.get("/huge") { _, _ in String(repeating: "h", count: 2048) }
    router.get("/echo-head") { request, _ -> Response in
        // Host became the authority; the other fields pass through, both ways.
        Response(status: .ok, headers: [HTTPField.Name("X-Authority")!: request.head.authority ?? "none",
                                        HTTPField.Name("X-Echo")!: request.headers[HTTPField.Name("X-Test")!] ?? "none",
                                        HTTPField.Name("X-Has-Host")!: request.headers[HTTPField.Name("Host")!] == nil ? "no" : "yes"])
    }
    // Send to one socket, by id, through the broker in the request context.
    router.post("/sockets/:id") { request, context -> HTTPResponse.Status in
        let id = try context.parameters.require("id", as: UInt64.self)
        let text = String(buffer: try await request.body.collect(upTo: 1024))
        return context.broker.send(SocketID(rawValue: id), .text(text)).isQueued ? .accepted : .serviceUnavailable
    }
    var configuration = configuration
    configuration.webSocket.paths = ["/ws"]
    return SwitchboardApplication(router: router, configuration: configuration, logger: logger, maxResponseBodyBytes: 1024,
                                  metricsFactory: metrics) { WhoAmI($0) }
}

@Suite("The one-port adapter's edges", .serialized)
struct AdapterTests {
    @Test func aSlowRouteDoesNotLetTheNextAnswerOvertakeIt() async throws {
        let app = try await RunningExample.start(makeApplication: adapterApplication)
        let http = try TestClient(port: app.port)
        let bodies = try await io {
            try http.send("GET /slow/300 HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\nGET /slow/50 HTTP/1.1\r\nHost: t\r\n\r\n")
            return try (0..<3).map { _ in try http.readResponse().bodyText }
        }
        #expect(bodies == ["slow", "fast", "slow"])
        try await app.stop()
    }

    @Test func errorsAndOversizedResponsesAre500WithoutDetails() async throws {
        let app = try await RunningExample.start(makeApplication: adapterApplication)
        let http = try TestClient(port: app.port)
        let boom = try await io { try http.request("GET", "/boom") }
        #expect(boom.status == 500)
        #expect(boom.body.isEmpty, "no error text leaks to the client")
        let huge = try await io { try http.request("GET", "/huge") }
        #expect(huge.status == 500, "2 KiB body past maxResponseBodyBytes 1024")
        #expect(app.logs.all.contains { $0.contains("larger than maxResponseBodyBytes (1024)") })
        #expect(try await io { try http.request("GET", "/fast") }.bodyText == "fast", "the connection goes on")
        try await app.stop()
    }

    @Test func headerFieldsCrossTheBridgeBothWays() async throws {
        let app = try await RunningExample.start(makeApplication: adapterApplication)
        let http = try TestClient(port: app.port)
        let answer = try await io { try http.request("GET", "/echo-head", headers: "X-Test: forty two\r\n") }
        #expect(answer.status == 200)
        #expect(answer.header("X-Authority") == "example")
        #expect(answer.header("X-Echo") == "forty two")
        #expect(answer.header("X-Has-Host") == "no")
        try await app.stop()
    }

    @Test func aRouteSendsToOneSocket() async throws {
        let app = try await RunningExample.start(makeApplication: adapterApplication)
        let port = app.port
        let ws = try TestClient(port: port)
        let id = try await io { () -> String in
            _ = try ws.upgrade(path: "/ws")
            try ws.sendText("whoami")
            return try ws.readFrame().text
        }
        let http = try TestClient(port: port)
        #expect(try await io { try http.request("POST", "/sockets/\(id)", body: Array("psst".utf8)) }.status == 202)
        #expect(try await io { try ws.readFrame() }.text == "psst")
        try await app.stop()
    }

    @Test func aHandlerWithOnlyTheViewMethodGetsItsMessages() async throws {
        let app = try await RunningExample.start { configuration, logger, metrics in
            var configuration = configuration
            configuration.webSocket.paths = ["/ws"]
            return SwitchboardApplication(router: Router(context: SwitchboardRequestContext.self), configuration: configuration,
                                          logger: logger, maxResponseBodyBytes: 1024, metricsFactory: metrics) { ViewEcho($0) }
        }
        let ws = try TestClient(port: app.port)
        let frames = try await io { () -> [TestFrame] in
            _ = try ws.upgrade(path: "/ws")
            try ws.sendText("héllo")
            try ws.sendFrame(opcode: 2, payload: [0, 1, 2])
            return try (0..<4).map { _ in try ws.readFrame() }
        }
        #expect(frames.map(\.opcode) == [1, 1, 1, 2])
        #expect(frames[0].text == "view text 6" && frames[1].text == "héllo")
        #expect(frames[2].text == "view binary 3" && frames[3].payload == [0, 1, 2])
        try await app.stop()
    }
}
