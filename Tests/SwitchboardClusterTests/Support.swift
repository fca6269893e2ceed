import Foundation  // tests only: Process for redis-server and the switchboard nodes
import SwitchboardRESP
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

// A copy of the ecosystem tests' process runner (test
// targets cannot share code outside SwitchboardTestSupport; moving it there is a follow-up).

/// A blocking RESP connection for the test's own questions to Redis.
final class RedisProbe {
    private let client: TestClient
    private var parser = RESPParser()

    init(port: Int) throws { client = try TestClient(port: port, receiveTimeoutMilliseconds: 5_000) }

    func call(_ arguments: [String]) throws -> RESPValue {
        var out: [UInt8] = []
        RESPWriter.writeCommand(arguments, into: &out)
        try client.send(out)
        while true {
            if !client.buffered.isEmpty {
                let (consumed, result) = client.buffered.withUnsafeBytes { parser.parse($0) }
                client.removeBuffered(consumed)
                switch result {
                case .value(let v): return v
                case .error(let e): throw RedisServer.Failure(description: "parse error \(e)")
                case .needMore: break
                }
            }
            guard try client.fill() else { throw TestClient.Failure.closed }
        }
    }

    /// Subscribers Redis counts for one pub/sub channel (PUBSUB NUMSUB).
    func subscriberCount(_ channel: String) throws -> Int64 {
        try count(["PUBSUB", "NUMSUB", channel])
    }

    /// Subscribers Redis counts for one shard channel (PUBSUB SHARDNUMSUB; Redis Cluster mode).
    func shardSubscriberCount(_ channel: String) throws -> Int64 {
        try count(["PUBSUB", "SHARDNUMSUB", channel])
    }

    /// The count of a `[channel, count]` answer.
    private func count(_ command: [String]) throws -> Int64 {
        guard case .array(let items) = try call(command), items.count == 2,
              case .integer(let n) = items[1] else { throw RedisServer.Failure(description: command.prefix(2).joined(separator: " ")) }
        return n
    }
}

/// The built executables, next to the test binary (a missing one fails the test).
func executablePath(_ name: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    try #require(n > 0)
    let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let path = me.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/" + name
    try #require(FileManager.default.isExecutableFile(atPath: path), "\(path) not built (swift build --build-tests builds it)")
    return path
}

/// A switchboard node: a child process whose standard error is read as it comes.
final class NodeProcess {
    let process = Process()
    private let stderrPipe = Pipe()
    private(set) var errorText = ""
    private(set) var port = 0

    init(_ name: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: try executablePath(name))
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SWITCHBOARD_") }
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let log = try readError { $0.contains("listening on 127.0.0.1:") && $0.hasSuffix("\n") }
        guard let after = log.range(of: "listening on 127.0.0.1:"), let p = Int(log[after.upperBound...].prefix { $0.isNumber }) else {
            throw RedisServer.Failure(description: "no port in: \(log)")
        }
        port = p
    }

    /// Reads standard error until `predicate` holds for all of it (bounded).
    @discardableResult
    func readError(timeoutSeconds: Int = 20, until predicate: (String) -> Bool) throws -> String {
        let fd = stderrPipe.fileHandleForReading.fileDescriptor
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
        while !predicate(errorText) {
            guard ContinuousClock.now < deadline else { throw TestClient.Failure.timeout }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            errorText += String(decoding: chunk[0..<n], as: UTF8.self)
        }
        return errorText
    }

    /// SIGKILL and wait: nothing is left running, whatever the test did.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// One HTTP GET's body.
    func get(_ path: String) throws -> String {
        let c = try TestClient(port: port)
        try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
        return String(decoding: try c.readResponse().body, as: UTF8.self)
    }

    /// The sum of a metric over its shards, from /metrics.
    func metric(_ name: String) throws -> Int {
        try get("/metrics").split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            .compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }
}

/// A `switchboard-echo` node of a process-level cluster test, over the test's Redis on
/// 127.0.0.1:`redisPort` (a redis-server, or with `redisCluster` the seed master of a Redis
/// Cluster), with what those tests share: a 10 ms tick and a 20-200 ms reconnect backoff (the
/// tests restart and kill Redis). `settings` (`key=value`) are added as `--set` options.
func startClusterEchoNode(_ id: Int, redisPort: Int, shards: Int = 1, backend: String, redisCluster: Bool = false,
                          settings: [String] = []) throws -> NodeProcess {
    var arguments = ["--host", "127.0.0.1", "--port", "0", "--shards", String(shards), "--io-backend", backend,
                     "--set", "cluster_engine=redis"]
    if redisCluster { arguments += ["--set", "cluster_redis_mode=cluster"] }
    arguments += ["--set", "cluster_redis_url=redis://127.0.0.1:\(redisPort)", "--set", "cluster_node_id=\(id)", "--set", "tick_ms=10",
                  "--set", "cluster_redis_backoff_ms=20", "--set", "cluster_redis_max_backoff_ms=200"]
    for setting in settings { arguments += ["--set", setting] }
    return try NodeProcess("switchboard-echo", arguments)
}

/// The next `count` messages of a WebSocket, each expected to be a text frame.
func readTexts(_ ws: TestClient, count: Int) throws -> [String] {
    var texts: [String] = []
    while texts.count < count {
        let frame = try ws.readFrame()
        #expect(frame.opcode == 1, "a text frame")
        texts.append(frame.text)
    }
    return texts
}
