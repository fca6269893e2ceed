import Logging
import ServiceLifecycle
import Switchboard
import SwitchboardTestSupport
import Synchronization
import Testing

/// A small host service: runs until graceful shutdown, then records that it stopped.
final class HostService: Service {
    private let state = Mutex<(running: Bool, stopped: Bool)>((false, false))
    var running: Bool { state.withLock { $0.running } }
    var stopped: Bool { state.withLock { $0.stopped } }

    func run() async throws {
        state.withLock { $0.running = true }
        try? await gracefulShutdown()
        state.withLock { $0.stopped = true }
    }
}

@Suite("Broker as a Service", .serialized)
struct ServiceLifecycleTests {
    func configuration() -> BrokerConfiguration {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 2
        c.shutdownGraceMilliseconds = 5_000
        return c
    }

    /// Waits (bounded) until the broker has bound its port.
    func waitForPort(_ broker: Broker) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(10)
        while broker.port == 0 {
            guard ContinuousClock.now < deadline else { throw TestClient.Failure.timeout }
            try await Task.sleep(for: .milliseconds(1))
        }
        return broker.port
    }

    @Test func gracefulShutdownOfTheGroupStopsBothServicesAndClosesClientsWith1001() async throws {
        let broker = Broker(configuration: configuration(), logger: .discarding) { _ in DefaultsWorker() }
        let other = HostService()
        let group = ServiceGroup(services: [broker, other], gracefulShutdownSignals: [], logger: .discarding)
        let run = Task { try await group.run() }

        let client = try TestClient(port: try await waitForPort(broker))
        #expect(try client.upgrade(path: "/").status == 101)

        await group.triggerGracefulShutdown()
        // The graceful close: a close frame with 1001 (going away), then our answer.
        let close = try client.readFrame()
        #expect(close.opcode == 8)
        #expect(close.closeCode == 1001)
        try client.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        #expect(client.isClosedByServer())

        try await run.value
        #expect(other.stopped)
        #expect(broker.openConnections == 0)
    }

    @Test func cancellingTheGroupStopsTheBrokerWithoutGrace() async throws {
        var c = configuration()
        c.shutdownGraceMilliseconds = 60_000
        let broker = Broker(configuration: c, logger: .discarding) { _ in DefaultsWorker() }
        let group = ServiceGroup(services: [broker], gracefulShutdownSignals: [], logger: .discarding)
        let run = Task { try await group.run() }
        let client = try TestClient(port: try await waitForPort(broker))
        #expect(try client.upgrade(path: "/").status == 101)
        let started = ContinuousClock.now
        run.cancel()
        _ = try? await run.value
        // Grace 0: the 60 s grace is not waited for, and the client is cut.
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(client.isClosedByServer())
    }

    @Test func aBrokerThatCannotStartFailsTheGroupAndStopsTheOthers() async throws {
        let first = Broker(configuration: configuration(), logger: .discarding) { _ in DefaultsWorker() }
        try first.start()
        defer { first.shutdown(graceMilliseconds: 0) }
        var c = configuration()
        c.port = first.port  // in use
        let second = Broker(configuration: c, logger: .discarding) { _ in DefaultsWorker() }
        let other = HostService()
        let group = ServiceGroup(services: [other, second], gracefulShutdownSignals: [], logger: .discarding)
        await #expect(throws: (any Error).self) { try await group.run() }
        #expect(other.stopped)
    }
}

@Suite("Broker as a Service: no blocked executor thread", .serialized)
struct ServiceExecutorTests {
    /// The broker's service runs on an executor with a single thread, next to a ticking task on
    /// the same thread. During the shutdown grace (the client never answers the close frame),
    /// the ticker keeps ticking: start and shutdown block a dedicated thread, not the executor's.
    @Test func shutdownGraceDoesNotBlockTheServiceExecutor() async throws {
        let executor = OneThreadExecutor()
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 1
        c.shutdownGraceMilliseconds = 3_000
        let broker = Broker(configuration: c, logger: .discarding) { _ in DefaultsWorker() }
        let group = ServiceGroup(services: [broker], gracefulShutdownSignals: [], logger: .discarding)
        let finished = SourceValue()
        let run = Task(executorPreference: executor) {
            defer { finished.set(1) }
            try await group.run()
        }
        let ticks = SourceValue()
        let ticker = Task(executorPreference: executor) {
            while !Task.isCancelled {
                ticks.increment(by: 1)
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        defer { ticker.cancel() }

        var port = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while port == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
            port = broker.port
        }
        let client = try TestClient(port: port)
        #expect(try client.upgrade(path: "/").status == 101)
        await group.triggerGracefulShutdown()
        #expect(try client.readFrame().closeCode == 1001)
        // The broker now waits up to 3 s for our close frame, which we withhold.
        let before = ticks.value
        let tickDeadline = ContinuousClock.now + .milliseconds(2_000)
        while ticks.value < before + 20 && ContinuousClock.now < tickDeadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(ticks.value >= before + 20, "the executor's thread was blocked")
        #expect(finished.value == 0, "still inside the grace period")
        try client.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        try await run.value
    }
}
