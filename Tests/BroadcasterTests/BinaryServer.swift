import Foundation  // tests only: Process, to run the built executable
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The built `switchboard` executable next to the test binary (`swift build --build-tests`
/// builds it); a missing one fails the test.
func switchboardExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    try #require(n > 0)
    let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let path = me.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/switchboard"
    try #require(FileManager.default.isExecutableFile(atPath: path), "\(path) not built (swift build --build-tests builds it)")
    return path
}

/// The real `switchboard` executable as a child process serving the broadcaster protocol: the
/// executable's own configuration path (layers, compatibility mode, routing, metrics), and a
/// separate process, so that a test's client sockets are the only descriptors it holds.
/// Stopped with SIGTERM when released.
final class BinaryServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let stderrPipe = Pipe()
    private(set) var errorText = ""

    /// Starts `executable` (default: the built `switchboard`) with `arguments` and exactly
    /// `environment` plus PATH, and waits for its `listening on HOST:PORT` line.
    init(executable: String? = nil, _ arguments: [String], environment: [String: String] = [:]) throws {
        // The child inherits the limit: the server side of many sockets needs it as well.
        raiseFileLimit()
        process.executableURL = URL(fileURLWithPath: try executable ?? switchboardExecutable())
        process.arguments = arguments
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        env.merge(environment) { $1 }
        process.environment = env
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let log = try Self.read(stderrPipe, into: &errorText, until: { $0.contains("listening on ") && $0.hasSuffix("\n") }, process: process)
        let line = try #require(log.split(separator: "\n").first { $0.contains("listening on ") })
        let marker = try #require(line.range(of: "listening on "))
        let address = line[marker.upperBound...]
        port = try #require(Int(address.split(separator: ":").last!.prefix { $0.isNumber }), "\(line)")
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// Reads `pipe` until `predicate` holds for what was read, the process exits, or 60 s
    /// (a loaded machine starts a debug binary slowly).
    static func read(_ pipe: Pipe, into text: inout String, until predicate: (String) -> Bool, process: Process) throws -> String {
        let fd = pipe.fileHandleForReading.fileDescriptor
        let deadline = ContinuousClock.now + .seconds(60)
        while !predicate(text) {
            guard ContinuousClock.now < deadline else { throw TestClient.Failure.timeout }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 {
                if !process.isRunning { break }
                continue
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            text += String(decoding: chunk[0..<n], as: UTF8.self)
        }
        try #require(predicate(text), "switchboard exited or never said it listens: \(text)")
        return text
    }

    /// The arguments that serve the broadcaster with the tests' secret and API key on
    /// 127.0.0.1, ephemeral port, `backend`, `shards` shards, plus `extra` settings.
    static func broadcasterArguments(backend: IOBackendKind, shards: Int = 2, extra: [String] = []) -> [String] {
        ["--host", "127.0.0.1", "--port", "0", "--io-backend", backend.rawValue, "--shards", String(shards), "--log-level", "notice",
         "--set", "broadcaster_enabled=true", "--set", "broadcaster_jwt_secret=\(testSecret)",
         "--set", "broadcaster_api_keys=test-api-key", "--set", "ws_permessage_deflate=false"] + extra.flatMap { ["--set", $0] }
    }

    /// One HTTP request on a fresh connection.
    func http(_ method: String, _ path: String, headers: [String] = [], body: String = "") throws -> TestResponse {
        let c = try TestClient(port: port)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: t\r\n"
        for h in headers { head += h + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.utf8.count)\r\n" }
        try c.send(head + "\r\n" + body)
        return try c.readResponse()
    }

    /// A WebSocket client of the broadcaster protocol.
    func client(path: String = "/broadcaster/websocket") throws -> BCClient {
        let c = try TestClient(port: port)
        let r = try c.upgrade(path: path)
        #expect(r.status == 101, "\(r)")
        return BCClient(c)
    }
}

/// A token for the tests' secret, valid for an hour from now.
func testToken(sub: String = "user-1", channels: [String] = ["test-channel"], scope: [String] = ["subscribe"],
               secret: String = testSecret) -> String {
    let now = Int(BroadcasterTimestamp.nowNanoseconds() / 1_000_000_000)
    let channelsJSON = "[" + channels.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    let scopeJSON = "[" + scope.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    return hs256(#"{"sub":"\#(sub)","aud":"broadcaster","exp":\#(now + 3600),"iat":\#(now),"authorizedChannels":\#(channelsJSON),"scope":\#(scopeJSON)}"#,
                 secret: secret)
}
