import Foundation  // tests only: Process, to run the Python client
import Switchboard
import SwitchboardProtocols
import Testing

/// The repository's Python venv (made by `source deploy/lib.sh; ensure_python_venv "$PWD"`),
/// or $BROADCASTER_PYTHON.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let python = ProcessInfo.processInfo.environment["BROADCASTER_PYTHON"]
    ?? repositoryRoot.appendingPathComponent(".build/autobahn-venv/bin/python").path
private let script = repositoryRoot.appendingPathComponent("Tests/interop/broadcaster_test.py").path

@Suite("Broadcaster: interop with Python websockets", .serialized)
struct BroadcasterInteropTests {
    /// Runs Tests/interop/broadcaster_test.py against a real broker. A missing Python is a
    /// failure, not a skip: the check must run wherever the suite runs.
    @Test("Python websockets client: the reference's flows", arguments: backends)
    func pythonClient(_ backend: IOBackendKind) throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("no Python at \(python): run `source deploy/lib.sh; ensure_python_venv \"$PWD\"` (or set BROADCASTER_PYTHON)")
            return
        }
        let server = try BCServer(backend: backend, shards: 2) {
            $0.history = [BroadcasterHistoryRule(pattern: "test-channel", limits: .init(maxMessages: 100, maxBytes: 1 << 20))]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, "ws://127.0.0.1:\(server.port)/broadcaster", "http://127.0.0.1:\(server.port)/broadcaster",
                       testSecret, "test-api-key"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(text)")
        #expect(text.contains(" passed, 0 failed"), "\(text)")
    }
}
