import Foundation
import HBTestSupport
import Logging
import ServiceLifecycle
import Switchboard
import SwitchboardHummingbird
import Synchronization
@testable import hummingbird_chat_example

/// Every line a logger wrote, to see that the broker logs through the application's logger.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
    /// The port of the first "listening on 127.0.0.1:PORT" line, once there is one.
    var listeningPort: Int? {
        for line in all {
            // Switchboard's line (Hummingbird's own server logs "listening on" too).
            guard let range = line.range(of: "switchboard listening on 127.0.0.1:") else { continue }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        return nil
    }
}

struct CapturingLogHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        lines.append("\(event.level) \(event.message)")
    }
}

/// The example application, one port, in a `ServiceGroup` with its metrics exporter, as
/// `main.swift` runs it (without signals: the test triggers the graceful shutdown).
struct RunningExample {
    let broker: Broker
    let group: ServiceGroup
    let run: Task<Void, any Error>
    let port: Int
    let logs: LogLines
    let metrics: TestMetricsFactory

    /// - Parameter makeApplication: the application to run (default: the example's), given the
    ///   configuration, the capturing logger and the test metrics backend.
    static func start(
        shards: Int = 2,
        makeApplication: (BrokerConfiguration, Logger, TestMetricsFactory) -> SwitchboardApplication = {
            makeChatApplication(configuration: $0, logger: $1, metricsFactory: $2)
        }
    ) async throws -> RunningExample {
        let logs = LogLines()
        let logger = Logger(label: "example-app") { _ in CapturingLogHandler(lines: logs) }
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = shards
        configuration.shutdownGraceMilliseconds = 2_000
        let metrics = TestMetricsFactory()
        let application = makeApplication(configuration, logger, metrics)
        // The application inside the host's group, as a service among others would be.
        let group = ServiceGroup(services: [application], logger: logger)
        let run = Task { try await group.run() }
        guard await eventually(timeoutMilliseconds: 20_000, { logs.listeningPort != nil }), let port = logs.listeningPort else {
            run.cancel()
            throw StartFailure(lines: logs.all)
        }
        return RunningExample(broker: application.broker, group: group, run: run, port: port, logs: logs, metrics: metrics)
    }

    struct StartFailure: Error { let lines: [String] }

    /// Graceful shutdown of the whole group; returns when every service has returned.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await run.value
    }
}

extension TestClient {
    /// One request with a body, and its response.
    func request(_ method: String, _ target: String, body: [UInt8] = [], headers: String = "") throws -> TestResponse {
        try send(Array("\(method) \(target) HTTP/1.1\r\nHost: example\r\nContent-Length: \(body.count)\r\n\(headers)\r\n".utf8) + body)
        return try readResponse()
    }
}

/// Polls `condition` until it holds or the time is up, suspending between polls: a test task
/// must never block a thread of the cooperative pool (the services it waits for run there).
func eventually(timeoutMilliseconds: Int = 5_000, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// Runs blocking test-client I/O on a thread of its own and awaits it. The tests' clients block
/// on sockets; on a thread of the cooperative pool they would starve the router's tasks (which
/// answer those very requests) on a machine with few cores.
func io<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

extension TestResponse: @unchecked Sendable {}
extension TestFrame: @unchecked Sendable {}
