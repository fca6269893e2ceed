import Foundation
import SwitchboardTestSupport  // runTool
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The repository root (this file is Tests/SwitchboardRPCTests/RPCInteropTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// `switchboard-rpc-example` started on 127.0.0.1 with an ephemeral port.
final class ExampleServer {
    let process = Process()
    let port: Int
    private let stderr = Pipe()

    init(backend: String, shards: Int = 2) throws {
        let binary = ProcessInfo.processInfo.environment["RPC_EXAMPLE_BIN"]
            ?? repositoryRoot.appendingPathComponent(".build/debug/switchboard-rpc-example").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw RPCTestFailure("\(binary) missing: build it with `swift build --build-tests` (or set RPC_EXAMPLE_BIN)")
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--host", "127.0.0.1", "--port", "0", "--io-backend", backend, "--shards", String(shards)]
        process.standardError = stderr
        try process.run()
        // Read stderr until the "listening on HOST:PORT" line (the process writes it once bound).
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
            throw RPCTestFailure("example did not start: \(seen)")
        }
        port = found
        // Keep draining stderr so the server never blocks on a full pipe.
        handle.readabilityHandler = { h in _ = h.availableData }
    }

    func stop() {
        stderr.fileHandleForReading.readabilityHandler = nil
        process.terminate()
        process.waitUntilExit()
    }
}

/// An executable on PATH, or nil.
func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Interop with clients nobody here wrote, against the example server on both backends. A
/// missing Node or Python venv is a failure, not a skip.
@Suite("RPC interop: reference JS client and raw Python websockets", .serialized)
struct RPCInteropTests {
    @Test("amqp-swarm 0.3.2's own JavaScript client", arguments: ["uring", "epoll"])
    func referenceJavaScriptClient(_ backend: String) throws {
        let node = try which("node").unwrap("node is not installed (Node 20 runs the reference client)")
        let server = try ExampleServer(backend: backend)
        defer { server.stop() }
        let dir = repositoryRoot.appendingPathComponent("Tests/interop/rpc_js")
        let r = try runTool(node, [dir.appendingPathComponent("interop.js").path, "ws://127.0.0.1:\(server.port)/"],
                        environment: ["NODE_PATH": dir.appendingPathComponent("stubs").path])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains(" passed, 0 failed"), "\(r.output)")
    }

    @Test("raw-JSON Python websockets session with the seed's example and hostile inputs", arguments: ["uring", "epoll"])
    func rawPythonSession(_ backend: String) throws {
        let python = ProcessInfo.processInfo.environment["RPC_PYTHON"]
            ?? repositoryRoot.appendingPathComponent(".build/autobahn-venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw RPCTestFailure("\(python) missing: run `source deploy/lib.sh; ensure_python_venv \"$PWD\"` (or set RPC_PYTHON)")
        }
        let server = try ExampleServer(backend: backend)
        defer { server.stop() }
        let r = try runTool(python, [repositoryRoot.appendingPathComponent("Tests/interop/rpc_raw_session.py").path, "ws://127.0.0.1:\(server.port)/"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains(" passed, 0 failed"), "\(r.output)")
    }
}
