import Atomics

/// The bytes of one connection's streamed request bodies that arrived and were not taken by
/// their consumers yet, against `http_body_stream_buffer_bytes`.
///
/// Thread rules: `add`, `markPaused` and `clearPaused` run on the connection's shard (the
/// producer); `release` runs on any thread (a consumer, or the shard when a failed stream drops
/// its parts). The shard pauses reading at the limit; the consumer that brings the count down
/// to the low-water mark (half the limit) while paused calls `resume`, which posts to the
/// shard. Exactly one side sees the other (the Dekker pattern below), so a pause is never
/// missed by both: the shard's tick re-checks paused connections as well, should a post be
/// refused (inbox full).
final class BodyStreamBudget: Sendable {
    let limitBytes: Int
    var lowWaterBytes: Int { limitBytes / 2 }
    private let buffered = ManagedAtomic<Int>(0)
    private let paused = ManagedAtomic<Bool>(false)
    /// Written by the shard only (after `add`), read anywhere: relaxed is enough for a statistic.
    private let peak = ManagedAtomic<Int>(0)
    /// Asks the shard to read again (any thread).
    private let resume: @Sendable () -> Void

    init(limitBytes: Int, resume: @escaping @Sendable () -> Void) {
        precondition(limitBytes > 0, "http_body_stream_buffer_bytes must be > 0")
        self.limitBytes = limitBytes
        self.resume = resume
    }

    var bufferedBytes: Int { buffered.load(ordering: .relaxed) }
    var peakBytes: Int { peak.load(ordering: .relaxed) }

    /// Shard thread: `n` bytes were queued for a consumer. True when reading must pause.
    func add(_ n: Int) -> Bool {
        // Relaxed: the count is only compared against the limit here; the handshake with a
        // consumer goes through `markPaused`'s sequentially consistent accesses.
        let total = buffered.wrappingIncrementThenLoad(by: n, ordering: .relaxed)
        if total > peak.load(ordering: .relaxed) { peak.store(total, ordering: .relaxed) }
        return total >= limitBytes
    }

    /// Shard thread, right after pausing the socket. False when the consumer drained below the
    /// low-water mark meanwhile and did not see the flag: the caller resumes at once.
    func markPaused() -> Bool {
        // Sequentially consistent store then load, against `release`'s decrement then load:
        // in the single total order either the consumer's load sees `true` (it resumes) or
        // this load sees its decrement (we resume); the exchange makes only one of them act.
        paused.store(true, ordering: .sequentiallyConsistent)
        if buffered.load(ordering: .sequentiallyConsistent) <= lowWaterBytes,
           paused.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged {
            return false
        }
        return true
    }

    /// Shard thread: the connection reads again (resumed from the tick, or closed).
    func clearPaused() {
        paused.store(false, ordering: .sequentiallyConsistent)
    }

    /// Any thread: `n` bytes left the buffer (taken by a consumer, or dropped).
    func release(_ n: Int) {
        // See `markPaused` for the pairing of these sequentially consistent accesses.
        let total = buffered.wrappingDecrementThenLoad(by: n, ordering: .sequentiallyConsistent)
        assert(total >= 0, "released more than was added")
        if total <= lowWaterBytes, paused.load(ordering: .sequentiallyConsistent),
           paused.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged {
            resume()
        }
    }
}
