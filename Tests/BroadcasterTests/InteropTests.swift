import Foundation  // tests only: the repository paths
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport  // runTool
import Testing

/// The repository's Python venv (made by `source deploy/lib.sh; ensure_python_venv "$PWD"`),
/// or $BROADCASTER_PYTHON.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let python = ProcessInfo.processInfo.environment["BROADCASTER_PYTHON"]
    ?? repositoryRoot.appendingPathComponent(".build/autobahn-venv/bin/python").path
private let script = repositoryRoot.appendingPathComponent("Tests/interop/broadcaster_test.py").path

@Suite("Broadcaster: interop with Python websockets", .serialized)
struct BroadcasterInteropTests {
    /// Runs Tests/interop/broadcaster_test.py against the built `switchboard` executable. A missing Python is a
    /// failure, not a skip: the check must run wherever the suite runs.
    @Test("Python websockets client: the reference's flows", arguments: backends)
    func pythonClient(_ backend: IOBackendKind) throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("no Python at \(python): run `source deploy/lib.sh; ensure_python_venv \"$PWD\"` (or set BROADCASTER_PYTHON)")
            return
        }
        // The real executable, configured the way an operator would (`--set` keys).
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: backend,
                                                                        extra: ["broadcaster_history=test-channel|100|1048576|0"]))
        let (status, text) = try runTool(python, [script, "ws://127.0.0.1:\(server.port)/broadcaster",
                                                  "http://127.0.0.1:\(server.port)/broadcaster", testSecret, "test-api-key"])
        #expect(status == 0, "\(text)")
        #expect(text.contains(" passed, 0 failed"), "\(text)")
    }
}

@Suite("Broadcaster: interop with a real browser", .serialized)
struct BroadcasterBrowserTests {
    /// Runs Tests/browser/broadcaster_browser_test.py: headless Chromium (Debian `chromium` +
    /// `chromium-driver`, Selenium in the venv; `source deploy/lib.sh; ensure_browser_tools "$PWD"`)
    /// opens a page whose native WebSocket auths, subscribes (and is refused an unauthorized
    /// channel); the script REST-publishes and checks what the page received. A missing tool is
    /// a failure (the script exits 1 naming it), not a skip.
    @Test("headless Chromium: auth, subscribe, REST publish shown on the page, unauthorized channel refused")
    func chromium() throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("no Python at \(python): run `source deploy/lib.sh; ensure_python_venv \"$PWD\"; ensure_browser_tools \"$PWD\"`")
            return
        }
        let server = try BinaryServer(BinaryServer.broadcasterArguments(backend: .uring))
        let (status, text) = try runTool(python, [repositoryRoot.appendingPathComponent("Tests/browser/broadcaster_browser_test.py").path,
                                                  "http://127.0.0.1:\(server.port)/broadcaster", testSecret, "test-api-key"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("8 passed, 0 failed"), "\(text)")
    }
}
