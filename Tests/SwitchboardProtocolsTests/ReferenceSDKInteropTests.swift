import Foundation
import SwitchboardTestSupport
import Testing

/// The built `switchboard` executable on 127.0.0.1, ephemeral port; stderr is read until its
/// "listening on 127.0.0.1:PORT" line, then drained.
private final class SwitchboardProcess {
    let process = Process()
    let port: Int
    private let stderr = Pipe()

    init(arguments: [String], environment: [String: String] = [:]) throws {
        let binary = ProcessInfo.processInfo.environment["SWITCHBOARD_BIN"]
            ?? RepositoryTools.packageRoot.appendingPathComponent(".build/debug/switchboard").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw MissingTool("\(binary) missing: build it with `swift build --build-tests` (or set SWITCHBOARD_BIN)")
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--host", "127.0.0.1", "--port", "0"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardError = stderr
        try process.run()
        var seen = ""
        var found: Int? = nil
        let handle = stderr.fileHandleForReading
        while found == nil {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
            if let r = seen.range(of: #"listening on 127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                found = Int(seen[r].split(separator: ":").last!)
            }
        }
        guard let found else {
            process.terminate()
            throw MissingTool("switchboard did not start: \(seen)")
        }
        port = found
        handle.readabilityHandler = { h in _ = h.availableData }
    }

    func stop() {
        stderr.fileHandleForReading.readabilityHandler = nil
        process.terminate()
        process.waitUntilExit()
    }
}

/// An executable on PATH, or `MissingTool` (a required tool: the test fails, never skips).
private func requiredTool(_ name: String, _ why: String) throws -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw MissingTool("\(name) is not installed (\(why))")
}

/// @sitnikov/connection-broker's own TypeScript client SDK (stripped to JavaScript in
/// Tests/interop/cb_js, MIT, see its NOTICE; `ws` replaced by the RFC 6455 stand-in in
/// Tests/interop/rpc_js/stubs) against the built `switchboard` in its default profile.
@Suite("Connection broker: the reference's own JavaScript SDK", .serialized)
struct ConnectionBrokerReferenceSDKTests {
    @Test("register, list, open, messages both ways, close, disconnect, and its failure paths", arguments: ["uring", "epoll"])
    func referenceSDK(_ backend: String) throws {
        let node = try requiredTool("node", "Node 20 runs the reference client SDK")
        let server = try SwitchboardProcess(arguments: ["--io-backend", backend, "--shards", "2"])
        defer { server.stop() }
        let (status, text) = try runTool(node, [RepositoryTools.interopScript("cb_js/interop.js"), "ws://127.0.0.1:\(server.port)/"],
                                         environment: ["NODE_PATH": RepositoryTools.interopScript("rpc_js/stubs")])
        #expect(status == 0, "\(text)")
        #expect(text.contains("23 passed, 0 failed"), "\(text)")
    }
}
