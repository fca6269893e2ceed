import DequeModule

/// The remote socket calls one shard waits on (cluster only): `subscribe`, `unsubscribe` and
/// `subscriptions(of:)` on a socket of another node, each sent to that node's inbox with a
/// call id and answered back through this node's inbox. Shard thread only.
///
/// Each call ends exactly once: its answer, a refusal (no Redis, the target node is down, the
/// connection lost), its deadline (`cluster_remote_call_timeout_ms`, checked on the shard's
/// tick), or the shard draining. Whichever comes first removes it; later ones find nothing.
/// Every call has the same timeout, so deadlines are in call order: the expiry walks a deque
/// from its front and stops at the first call not due, O(1) per call.
final class RemoteSocketCalls {
    typealias Completion = (Result<RemoteSocketAnswer, BrokerError>) -> Void

    private var waiting: [UInt64: Completion] = [:]
    /// Call ids with their deadlines, oldest first (ids already answered are skipped).
    private var deadlines = Deque<(call: UInt64, atMilliseconds: Int64)>()
    private var nextCall: UInt64 = 0
    /// Set when the shard drains: new calls are refused with `.stopped`, none is left waiting.
    private var draining = false

    /// Calls waiting for their answer.
    var count: Int { waiting.count }

    /// Registers a call due at `deadlineMilliseconds`; nil (and `completion` already called
    /// with `.stopped`) when the shard is draining.
    func add(deadlineMilliseconds: Int64, _ completion: @escaping Completion) -> UInt64? {
        guard !draining else {
            completion(.failure(.stopped))
            return nil
        }
        nextCall &+= 1
        assert(waiting[nextCall] == nil, "call ids are not reused while waiting")
        waiting[nextCall] = completion
        assert(deadlines.last.map { $0.atMilliseconds <= deadlineMilliseconds } ?? true, "one timeout for every call: deadlines in order")
        deadlines.append((nextCall, deadlineMilliseconds))
        return nextCall
    }

    /// Whether `call` still waits (then a `complete` of it ends it).
    func isWaiting(_ call: UInt64) -> Bool { waiting[call] != nil }

    /// Ends a call (answer or failure); false when it had ended already.
    @discardableResult
    func complete(_ call: UInt64, _ result: Result<RemoteSocketAnswer, BrokerError>) -> Bool {
        guard let completion = waiting.removeValue(forKey: call) else { return false }
        completion(result)
        return true
    }

    /// Fails the calls whose deadline passed with `.timedOut`, each after `counted` (so a
    /// caller that resumes sees the count already); returns how many.
    @discardableResult
    func expire(nowMilliseconds: Int64, counted: () -> Void = {}) -> Int {
        var expired = 0
        while let first = deadlines.first, first.atMilliseconds <= nowMilliseconds {
            deadlines.removeFirst()
            guard isWaiting(first.call) else { continue }
            counted()
            complete(first.call, .failure(.timedOut))
            expired += 1
        }
        // Answered calls leave their deadline behind; once none waits, drop them all.
        if waiting.isEmpty { deadlines.removeAll(keepingCapacity: deadlines.count < 1024) }
        return expired
    }

    /// The shard drains: every waiting call fails with `.stopped` (its answer may never be
    /// read), and new ones are refused.
    func drain() {
        draining = true
        let all = waiting
        waiting = [:]
        deadlines.removeAll()
        for (_, completion) in all { completion(.failure(.stopped)) }
    }
}
