@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The built `switchboard` executable, next to this test binary in the build directory
/// (`SWITCHBOARD_BINARY` overrides). Missing is a failure, not a skip: build with
/// `swift build --build-tests` first.
func switchboardExecutable() -> String? {
    if let path = getenv("SWITCHBOARD_BINARY") { return String(cString: path) }
    return switchboardExecutable(named: "switchboard")
}

/// The package's executable `name`, next to this test binary (built by `swift build --build-tests`).
func switchboardExecutable(named name: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = exe.lastIndex(of: "/") else { return nil }
    let candidate = String(exe[..<slash]) + "/" + name
    return access(candidate, X_OK) == 0 ? candidate : nil
}

/// One run of the server executable, its standard error read through a socket pair.
final class ServerProcess {
    let pid: pid_t
    private let errFD: Int32
    private(set) var stderrText = ""

    /// Starts `path args`; nil (with the reason) when posix_spawn fails.
    init(path: String, arguments: [String]) throws {
        var fds: [Int32] = [0, 0]
        // Close-on-exec from birth (a socket pair: pipe2 is not imported), so children spawned
        // by tests running in parallel never inherit the write end and hide our EOF.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestFailure("socketpair: errno \(errno)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        // The child starts with no blocked signal and default dispositions, whatever the test
        // runner's thread had.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, environ)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw TestFailure("posix_spawn \(path): errno \(rc)") }
        pid = child
        errFD = fds[0]
    }

    deinit {
        close(errFD)
    }

    /// Reads standard error until it contains `marker` (true) or the process closes it
    /// (exited: false) or the deadline passes (false).
    func waitForStderr(_ marker: String, timeoutMilliseconds: Int = 20_000) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !stderrText.contains(marker) {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return false }
            var p = pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(min(left, 1000))) <= 0 { continue }
            let n = read(errFD, &chunk, chunk.count)
            if n <= 0 { return stderrText.contains(marker) }
            stderrText += String(decoding: chunk[0..<n], as: UTF8.self)
        }
        return true
    }

    /// Sends `signal` and reaps the process; its wait status.
    @discardableResult
    func stop(_ signal: Int32) -> Int32 {
        kill(pid, signal)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A port outside the kernel's ephemeral range that nothing holds now, so tests that bind
/// port 0 in parallel never take it between two runs of the server.
func unusedFixedPort() -> Int {
    for _ in 0..<1000 {
        let port = 20_000 + Int.random(in: 0..<12_000)
        let fd = bindListener(port: port)
        if fd >= 0 { close(fd); return port }
    }
    return unusedPort()
}

/// Issue 17 item 5: the listening socket outlived an io_uring process by some milliseconds,
/// so an immediate restart on the same port failed with EADDRINUSE. Each round here stops the
/// real executable (with a client connection open for SIGKILL) and starts it again at once on
/// the same port: every start must bind and serve.
@Suite("switchboard executable: instant restart on the same port", .serialized)
struct RestartTests {
    static let rounds = 50

    @Test("stop, then restart at once on the same port: every start binds",
          arguments: ["uring", "epoll"], [SIGKILL, SIGTERM])
    func instantRestart(backend: String, signal: Int32) throws {
        let binary = try #require(switchboardExecutable(), "switchboard executable not found next to the test binary; run `swift build --build-tests`")
        let port = unusedFixedPort()
        let arguments = ["--host", "127.0.0.1", "--port", String(port), "--io-backend", backend, "--shards", "2"]
        var failures: [String] = []
        for round in 0..<Self.rounds {
            let server = try ServerProcess(path: binary, arguments: arguments)
            guard server.waitForStderr("switchboard listening on") else {
                let status = server.stop(SIGKILL)
                failures.append("round \(round): did not start (wait status \(status)): \(server.stderrText)")
                if failures.count >= 3 { break }
                continue
            }
            // Serve one request, and keep the connection open across a SIGKILL: an accepted
            // socket held by a shard's ring must not hold the port either.
            let client = try TestClient(port: port)
            try client.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try client.readResponse()
            if response.status != 200 { failures.append("round \(round): /health answered \(response.status)") }
            var open: TestClient? = client
            if signal == SIGTERM { open = nil }  // graceful: nothing to wait for
            let status = server.stop(signal)
            if signal == SIGTERM && !(status & 0x7f == 0 && (status >> 8) & 0xff == 0) {
                failures.append("round \(round): SIGTERM did not end in exit 0 (wait status \(status)): \(server.stderrText)")
            }
            _ = open
        }
        // One more start after the last stop, and its stop: the 50th restart.
        let last = try ServerProcess(path: binary, arguments: arguments)
        if !last.waitForStderr("switchboard listening on") {
            failures.append("final start: \(last.stderrText)")
        }
        last.stop(SIGKILL)
        #expect(failures.isEmpty, "\(backend) after signal \(signal): \(failures.count) failed starts: \(failures)")
    }
}
