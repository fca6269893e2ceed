import HBTestSupport
import Hummingbird
import Logging
import ServiceLifecycle
import Switchboard
import Synchronization
import Testing
@testable import hummingbird_chat_example

@Suite("Hummingbird's own server + Switchboard for WebSockets (two ports)", .serialized)
struct TwoPortTests {
    @Test func routesOnHummingbirdPublishToSocketsOnSwitchboard() async throws {
        let logs = LogLines()
        let logger = Logger(label: "two-port") { _ in CapturingLogHandler(lines: logs) }
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 2
        let httpPort = PortBox()
        let (app, _) = makeTwoPortChatApplication(httpPort: 0, configuration: configuration, logger: logger) { port in
            httpPort.port.withLock { $0 = port }
        }
        // The application (its server and the broker, a service of its own group) inside the
        // host's group: one graceful shutdown stops both.
        let group = ServiceGroup(services: [app], logger: logger)
        let run = Task { try await group.run() }
        #expect(await eventually(timeoutMilliseconds: 20_000) { httpPort.port.withLock { $0 } != nil && logs.listeningPort != nil })
        let hummingbirdPort = try #require(httpPort.port.withLock { $0 })
        let switchboardPort = try #require(logs.listeningPort)
        #expect(hummingbirdPort != switchboardPort)

        let ws = try TestClient(port: switchboardPort)
        #expect(try await io { try ws.upgrade(path: "/ws?room=lobby&name=ada") }.status == 101)
        let http = try TestClient(port: hummingbirdPort)
        let posted = try await io { try http.request("POST", "/rooms/lobby/messages", body: Array("via hummingbird".utf8)) }
        #expect(posted.status == 202)
        #expect(posted.bodyText == #"{"room":"lobby","bytes":15}"#)
        #expect(try await io { try ws.readFrame() }.text == "<api> via hummingbird")
        #expect(try await io { try http.request("GET", "/rooms/lobby/members") }.bodyText == "1\n")

        await group.triggerGracefulShutdown()
        try await run.value
        #expect(try await io { try ws.readFrame() }.opcode == 8, "the broker closed its WebSockets on the way out")
        #expect(logs.all.contains { $0.contains("switchboard: stopped") })
    }
}

/// Where the server-running callback leaves Hummingbird's port.
final class PortBox: Sendable {
    let port = Mutex<Int?>(nil)
}
