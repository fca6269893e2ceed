/// Runs callbacks one at a time, in the order they were queued, on one task per client: the
/// broker client's replacement for a serial `DispatchQueue`, so that the SDK's concurrency is
/// tasks alone.
///
/// Thread rules: ``async(_:)`` may be called from any thread or task; the work runs on the
/// queue's task, never concurrently with other work of the same queue. The task ends when the
/// queue is released (its stream finishes).
final class CallbackQueue: Sendable {
    private let continuation: AsyncStream<@Sendable () -> Void>.Continuation

    init() {
        let (stream, continuation) = AsyncStream<@Sendable () -> Void>.makeStream()
        self.continuation = continuation
        // The task holds the stream only, not the queue: releasing the queue finishes both.
        Task {
            for await work in stream { work() }
        }
    }

    deinit { continuation.finish() }

    /// Queues `work` after everything queued before it.
    func async(_ work: @escaping @Sendable () -> Void) {
        continuation.yield(work)
    }
}
