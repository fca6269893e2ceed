import CLiburing
import Logging
import ServiceLifecycle
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// `Broker` as a swift-service-lifecycle `Service`: it runs inside a host application's
/// `ServiceGroup` next to the host's other services.
///
/// ```swift
/// let broker = Broker(configuration: config, logger: logger) { _ in MyHandler() }
/// let group = ServiceGroup(services: [broker, myOtherService],
///                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// Thread rules: `start()` and `shutdown()` block (binding, spawning and joining threads), so
/// `run()` performs both on a dedicated thread and suspends on a continuation; no thread of the
/// cooperative pool ever waits for a shard. The shard and acceptor threads are spawned from
/// that dedicated thread with SIGTERM and SIGINT blocked and inherit the mask: the signals go
/// to the host's signal handling (the `ServiceGroup`), never interrupt an event loop.
extension Broker: Service {
    /// Starts, suspends until graceful shutdown is triggered (or the task is cancelled), then
    /// shuts down and returns when every thread has exited.
    ///
    /// On graceful shutdown, in-flight requests get `shutdownGraceMilliseconds` and WebSockets
    /// receive a close frame; on cancellation (the group gave up waiting, or another service
    /// failed) the grace is 0: connections are closed at once. Throws what `start()` throws.
    ///
    /// A broker runs once: either as a service or through `start()` / `shutdown()`, not both.
    public func run() async throws {
        try await Self.onDedicatedThread(name: "sb-start") { [self] in
            // This thread exits right after; the mask only matters to the threads it spawns.
            _ = sb_block_signals()
            try start()
        }
        let cancelled: Bool
        do {
            try await gracefulShutdown()
            cancelled = false
        } catch {
            // `gracefulShutdown()` throws only CancellationError: the task was cancelled.
            cancelled = true
        }
        let grace = cancelled ? 0 : configuration.shutdownGraceMilliseconds
        logger.notice("switchboard: \(cancelled ? "cancelled" : "graceful shutdown"), stopping (grace \(grace) ms)")
        try await Self.onDedicatedThread(name: "sb-shutdown") { [self] in
            shutdown(graceMilliseconds: grace)
        }
        logger.notice("switchboard: stopped")
    }

    /// Runs blocking `body` on a new detached thread and resumes the caller with its result.
    /// The caller's task is suspended meanwhile (its pool thread is free); cancellation does
    /// not interrupt `body`.
    static func onDedicatedThread(name: String, _ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let spawned = OSThread.spawn(name: name) {
                // Nobody joins this thread: detach it so it leaves nothing behind.
                pthread_detach(pthread_self())
                continuation.resume(with: Result { try body() })
            }
            if spawned == nil { continuation.resume(throwing: IOError.system("pthread_create", EAGAIN)) }
        }
    }
}
