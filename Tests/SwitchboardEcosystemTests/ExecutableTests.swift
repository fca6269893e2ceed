import Foundation
import Switchboard
import SwitchboardCommandLine
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The built `switchboard` executables, next to the test binary (a missing one fails the test).
func executablePath(_ name: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    try #require(n > 0)
    let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = me.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    let path = directory + "/" + name
    try #require(FileManager.default.isExecutableFile(atPath: path), "\(path) not built (swift build --build-tests builds it)")
    return path
}

/// A child process with its standard error read line by line.
final class ServerProcess {
    let process = Process()
    private let stderrPipe = Pipe()
    private let stdoutPipe = Pipe()
    private(set) var errorText = ""

    init(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: try executablePath(name))
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SWITCHBOARD_") }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardError = stderrPipe
        process.standardOutput = stdoutPipe
        try process.run()
    }

    /// Reads standard error until `predicate` holds for what was read (bounded).
    func readError(until predicate: (String) -> Bool) throws -> String {
        let fd = stderrPipe.fileHandleForReading.fileDescriptor
        let deadline = ContinuousClock.now + .seconds(20)
        while !predicate(errorText) {
            guard ContinuousClock.now < deadline else { throw TestClient.Failure.timeout }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            errorText += String(decoding: chunk[0..<n], as: UTF8.self)
        }
        return errorText
    }

    /// The port of the "listening on 127.0.0.1:PORT" line the servers log once bound.
    func listeningPort() throws -> Int {
        let log = try readError { $0.contains("listening on 127.0.0.1:") && $0.hasSuffix("\n") }
        let after = try #require(log.range(of: "listening on 127.0.0.1:"))
        return try #require(Int(log[after.upperBound...].prefix { $0.isNumber }))
    }

    /// Waits for the exit (bounded) and returns the status.
    func waitForExit() throws -> Int32 {
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning {
            guard ContinuousClock.now < deadline else { process.terminate(); throw TestClient.Failure.timeout }
            usleep(5_000)
        }
        _ = try? readError { _ in false }  // the rest, up to EOF
        return process.terminationStatus
    }

    var standardOutput: String {
        String(decoding: stdoutPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

@Suite("Executables", .serialized)
struct ExecutableTests {
    @Test func helpListsEveryOptionAndVersionPrints() throws {
        for name in ["switchboard", "switchboard-echo", "switchboard-chat"] {
            let help = try ServerProcess(name, ["--help"])
            #expect(try help.waitForExit() == 0)
            let text = help.standardOutput
            for option in ["--port", "--host", "--config", "--io-backend", "--shards", "--set", "--log-level",
                           "--print-config-keys", "--print-default-config", "--version", "--help"] {
                #expect(text.contains(option), "\(name) --help lacks \(option)")
            }
        }
        let version = try ServerProcess("switchboard", ["--version"])
        #expect(try version.waitForExit() == 0)
        #expect(version.standardOutput == "switchboard 0.1.0\n")
    }

    @Test func printDefaultConfigIsTheExampleFile() throws {
        let p = try ServerProcess("switchboard", ["--print-default-config"])
        #expect(try p.waitForExit() == 0)
        #expect(p.standardOutput == SwitchboardServerConfiguration().exampleFile())
        let keys = try ServerProcess("switchboard", ["--print-config-keys"])
        #expect(try keys.waitForExit() == 0)
        let listed = keys.standardOutput.split(separator: "\n").map { String($0.prefix { $0 != "\t" }) }
        #expect(listed == (BrokerConfiguration.keys + ConnectionBrokerOptions.keys + BroadcasterConfiguration.keys).map(\.key))
    }

    /// The path deploy/lib.sh takes: flags, the "listening on HOST:PORT" line on standard error,
    /// then SIGTERM through the ServiceGroup: a graceful close to the client, exit 0.
    @Test func sigtermShutsDownGracefully() throws {
        let server = try ServerProcess("switchboard", ["--host", "127.0.0.1", "--port", "0", "--shards", "1"],
                                       environment: ["SWITCHBOARD_HEALTH_PATH": "/alive"])
        let port = try server.listeningPort()

        let http = try TestClient(port: port)
        try http.send("GET /alive HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try http.readResponse().status == 200, "SWITCHBOARD_HEALTH_PATH applied")
        let ws = try TestClient(port: port)
        #expect(try ws.upgrade(path: "/", headers: "Sec-WebSocket-Protocol: connection-broker\r\n").status == 101)

        kill(server.process.processIdentifier, SIGTERM)
        let close = try ws.readFrame()
        #expect(close.opcode == 8)
        #expect(close.closeCode == 1001)
        try ws.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        #expect(try server.waitForExit() == 0)
        #expect(server.errorText.contains("switchboard: stopped"))
    }

    /// switchboard-echo subscribes a `/broadcast/NAME` socket on upgrade; a subscription a limit
    /// refuses is a 503, not an open socket that would never see a broadcast.
    @Test func echoRefusesABroadcastUpgradeWhoseSubscriptionIsRefused() throws {
        let server = try ServerProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1", "--set", "max_channels_per_shard=1",
        ])
        defer { if server.process.isRunning { server.process.terminate() } }
        let port = try server.listeningPort()

        let first = try TestClient(port: port)
        #expect(try first.upgrade(path: "/broadcast/a").status == 101)
        let same = try TestClient(port: port)
        #expect(try same.upgrade(path: "/broadcast/a").status == 101, "the channel exists: no new one needed")
        do {  // closed before the stop below
            let second = try TestClient(port: port)
            // The whole response, body too (`upgrade` reads the head only).
            try second.sendUpgradeRequest(path: "/broadcast/b")
            let refused = try second.readResponse()
            #expect(refused.status == 503)
            #expect(refused.bodyText == "subscription refused: tooManyChannels\n", "\(refused)")
        }
        // The two members of /broadcast/a still get its broadcasts.
        try first.sendFrame(opcode: 1, payload: Array("hi".utf8))
        for member in [first, same] {
            let frame = try member.readFrame()
            #expect(frame.opcode == 1)
            #expect(frame.payload == Array("hi".utf8))
        }
        // A graceful stop: each member answers its close (1001) so the exit does not wait out
        // the close timeout.
        server.process.terminate()
        for member in [first, same] {
            let close = try member.readFrame()
            #expect(close.closeCode == 1001)
            try member.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        }
        #expect(try server.waitForExit() == 0)
    }

    /// README "Graceful shutdown": a connection in a lingering close keeps lingering through a
    /// stop, and the exit follows the client's close (here, with both limits a minute long).
    @Test func aStopWaitsForALingeringCloseToEnd() throws {
        let server = try ServerProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1",
            "--set", "linger_timeout_ms=60000", "--set", "shutdown_grace_ms=60000",
        ])
        defer { if server.process.isRunning { server.process.terminate() } }
        let port = try server.listeningPort()

        let client = try TestClient(port: port)
        try client.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        server.process.terminate()
        // Lingering: the server's side is shut (EOF here), the socket open until this client
        // closes. A bounded look for an exit that must not come.
        #expect(try client.readToEnd().isEmpty)
        #expect(!waitUntil(timeoutMilliseconds: 300) { !server.process.isRunning }, "exited while a close lingered")
        client.shutdownWrite()  // the client's FIN ends the linger
        #expect(try server.waitForExit() == 0)
    }

    @Test func configurationErrorsExitTwoNamingTheLine() throws {
        let path = try temporaryFile("port = 3004\ncb_max_json_depth = deep\n")
        defer { unlink(path) }
        let p = try ServerProcess("switchboard", ["--config", path])
        #expect(try p.waitForExit() == 2)
        #expect(p.errorText.contains("\(path): line 2: cb_max_json_depth: 'deep' is not an integer"), "\(p.errorText)")
        let env = try ServerProcess("switchboard-echo", [], environment: ["SWITCHBOARD_PORT": "http"])
        #expect(try env.waitForExit() == 2)
        #expect(env.errorText.contains("environment variable SWITCHBOARD_PORT: port: 'http' is not an integer"), "\(env.errorText)")
    }
}
