import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The interop client, found relative to the package (never a hard-coded checkout path).
private let script = RepositoryTools.interopScript("connection_broker_test.py")

@Suite("Connection broker: interop", .serialized)
struct ConnectionBrokerInteropTests {
    /// Runs Tests/interop/connection_broker_test.py against a real broker (2 shards, default
    /// WebSocket settings: permessage-deflate on). Python with `websockets` (>= 13) comes from
    /// `RepositoryTools.python()`; when it is missing the test FAILS with how to create it.
    /// The script's second argument is the server's profile (its expectations differ).
    @Test("Python websockets client: full protocol, every field", arguments: ConnectionBrokerOptions.Profile.allCases)
    func pythonClient(_ profile: ConnectionBrokerOptions.Profile) throws {
        let python = try RepositoryTools.python()
        try #require(FileManager.default.fileExists(atPath: script), "missing \(script)")
        let server = try CBServer(shards: 2, options: .strictProfile(profile), configure: { $0.webSocket.perMessageDeflate = true })
        defer { server.stop() }
        let (status, text) = try runTool(python, [script, "ws://127.0.0.1:\(server.port)/", profile.rawValue])
        print(text)
        #expect(status == 0, "\(text)")
        #expect(text.contains("profile \(profile.rawValue): ") && text.contains(" passed, 0 failed"), "\(text)")
    }

    /// Manual mode: `CB_SERVE_SECONDS=60 CB_PORT=3004 swift test ... --filter serve` keeps a
    /// broker running for an external client.
    @Test("serve for an external client", .enabled(if: ProcessInfo.processInfo.environment["CB_SERVE_SECONDS"] != nil))
    func serve() throws {
        let env = ProcessInfo.processInfo.environment
        let seconds = Int(env["CB_SERVE_SECONDS"] ?? "") ?? 60
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = Int(env["CB_PORT"] ?? "") ?? 3004
        let broker = Broker(configuration: c, handlerFactory: ConnectionBroker.handlerFactory())
        try broker.start()
        print("connection broker on ws://127.0.0.1:\(broker.port)/ for \(seconds) s")
        sleep(UInt32(seconds))
        broker.shutdown(graceMilliseconds: 1000)
    }
}
