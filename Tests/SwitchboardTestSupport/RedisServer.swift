import Foundation  // tests only: Process to run redis-server
#if canImport(Glibc)
import Glibc
#endif

/// A redis-server of the test's own on 127.0.0.1, without persistence, with the DEBUG command
/// enabled (DEBUG PROTOCOL emits every RESP3 type, attributes and pushes included). Shared by
/// the RESP codec's tests and the cluster tests. Missing redis-server is a failure, not a skip:
/// install Debian's `redis-server` (deploy/test.sh does).
public final class RedisServer {
    static let candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]

    public let port: Int
    private let process: Process
    private let directory: String

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// On a free port, or on `port` (a restart of a server that was stopped).
    /// `extraArguments` go after the defaults (e.g. `--cluster-enabled yes`); a free port above
    /// `maxPort` is not used (Redis Cluster's bus listens on port + 10000).
    public init(port fixedPort: Int? = nil, extraArguments: [String] = [], maxPort: Int = 65_535) throws {
        guard let executable = Self.candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw Failure(description: "redis-server not found (\(Self.candidates)); install Debian's redis-server")
        }
        directory = NSTemporaryDirectory() + "switchboard-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Redis cannot listen on port 0 and report it: take a free port from the kernel, release
        // it, and start on it. Another process may take it in between; then try a new one. On a
        // fixed port, retry longer: the stopped server's socket may linger briefly.
        var lastError: Failure?
        for _ in 0..<(fixedPort == nil ? 50 : 50) {
            let candidate = try fixedPort ?? Self.freePort()
            if candidate > maxPort { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["--port", String(candidate), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--enable-debug-command", "yes", "--daemonize", "no", "--logfile", "", "--dir", directory] + extraArguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = out
            try process.run()
            do {
                try Self.waitForReady(out.fileHandleForReading.fileDescriptor)
                self.process = process
                self.port = candidate
                return
            } catch let error as Failure {
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
                lastError = error
                if fixedPort != nil { usleep(100_000) }
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw lastError ?? Failure(description: "redis-server did not start")
    }

    /// Stops the server (unless SHUTDOWN already did) and waits for it to exit. SIGKILL, not
    /// SIGTERM: the child inherits the test thread's signal mask, in which SIGTERM may be blocked
    /// (it then never arrives and the wait hangs). Nothing is persisted, so nothing is lost.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var isRunning: Bool { process.isRunning }

    public func waitUntilExit() { process.waitUntilExit() }

    private static func freePort() throws -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) == 0 && getsockname(s, $0, &length) == 0 }
        }
        guard bound else { throw Failure(description: "bind 127.0.0.1:0: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Reads the server's log until it says it accepts connections (an event, not a sleep).
    private static func waitForReady(_ fd: Int32) throws {
        var log = ""
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { throw Failure(description: "redis-server exited: \(log)") }
            log += String(decoding: chunk[0..<n], as: UTF8.self)
            if log.contains("Ready to accept connections") { return }
        }
        throw Failure(description: "redis-server not ready within 15 s: \(log)")
    }
}
