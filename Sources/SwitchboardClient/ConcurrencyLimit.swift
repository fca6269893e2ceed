import DequeModule
import Synchronization

/// At most `limit` holders at a time; the others wait, first come first served. The SDK's cap
/// on work that costs a thread each (``HostResolver``'s `getaddrinfo` lookups): without it, a
/// reconnect storm against a host name whose resolver hangs starts one thread per attempt.
///
/// Thread rules: every method may be called from any thread or task. One mutex guards the
/// counts and the queue; continuations are resumed after it is released. A waiter whose task
/// is cancelled leaves the queue and throws `CancellationError` (a connect timeout bounds the
/// wait that way); a slot handed to a waiter is its own, so ``release()`` is called exactly once
/// per successful ``acquire()``.
final class ConcurrencyLimit: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var limit: Int
        var running = 0
        var waiters = Deque<Waiter>()
        var nextId: UInt64 = 0
        /// Acquisitions that had to wait for a slot: the metric of the limit being hit.
        var waited = 0
        var peakRunning = 0
    }

    private let state: Mutex<State>

    init(limit: Int) {
        precondition(limit > 0, "a concurrency limit admits at least one holder")
        state = Mutex(State(limit: limit))
    }

    /// The number of holders admitted at once. Raising it admits waiters at once; lowering it
    /// lets the current holders finish.
    var limit: Int {
        get { state.withLock { $0.limit } }
        set {
            precondition(newValue > 0, "a concurrency limit admits at least one holder")
            let admitted = state.withLock { s -> [Waiter] in
                s.limit = newValue
                return Self.admit(&s)
            }
            for waiter in admitted { waiter.continuation.resume() }
        }
    }

    var running: Int { state.withLock { $0.running } }
    var waiting: Int { state.withLock { $0.waiters.count } }
    /// How many acquisitions waited for a slot since the start.
    var waitedCount: Int { state.withLock { $0.waited } }
    /// The most holders seen at once.
    var peakRunning: Int { state.withLock { $0.peakRunning } }

    /// Takes a slot, waiting in line while `limit` are taken. Throws `CancellationError` when
    /// the calling task is cancelled before it got one (it then holds nothing).
    func acquire() async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextId &+= 1
            return s.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Step { case admitted, cancelled, queued }
                let step = state.withLock { s -> Step in
                    // Under the lock: a cancellation handler that ran before this found no
                    // waiter to remove, and the flag it follows is already set.
                    if Task.isCancelled { return .cancelled }
                    if s.running < s.limit && s.waiters.isEmpty {
                        s.running += 1
                        s.peakRunning = max(s.peakRunning, s.running)
                        return .admitted
                    }
                    s.waited += 1
                    s.waiters.append(Waiter(id: id, continuation: continuation))
                    return .queued
                }
                switch step {
                case .admitted: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let removed = state.withLock { s -> Waiter? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index)
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Gives a slot back; the first waiter, if any, takes it.
    func release() {
        let admitted = state.withLock { s -> [Waiter] in
            precondition(s.running > 0, "release() without a matching acquire()")
            s.running -= 1
            return Self.admit(&s)
        }
        for waiter in admitted { waiter.continuation.resume() }
    }

    /// Moves waiters into free slots, in order. Called with the state locked.
    private static func admit(_ s: inout State) -> [Waiter] {
        var admitted: [Waiter] = []
        while s.running < s.limit, let waiter = s.waiters.popFirst() {
            s.running += 1
            s.peakRunning = max(s.peakRunning, s.running)
            admitted.append(waiter)
        }
        return admitted
    }
}
