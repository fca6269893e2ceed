import Synchronization

/// One atomic counter in its own object (so arrays of them are easy to share).
final class AtomicCounter: Sendable {
    let value = Atomic<Int64>(0)
    init(_ v: Int64 = 0) { value.store(v, ordering: .relaxed) }
    @inline(__always) func load() -> Int64 { value.load(ordering: .acquiring) }
    @inline(__always) func store(_ v: Int64) { value.store(v, ordering: .releasing) }
    /// Adds `delta`; releasing, so a reader that acquires the sum sees what came before.
    @inline(__always) func add(_ delta: Int64) { value.add(delta, ordering: .releasing) }
}

/// Counters a worker publishes once per loop turn for the progress line and the main
/// thread's stop decisions.
final class WorkerCounters: Sendable {
    /// Messages completed, warm-up included (echo/latency: round trips; fanout: deliveries to subscribers).
    let completed = AtomicCounter()
    let bytesIn = AtomicCounter()
    let open = AtomicCounter()
    let failed = AtomicCounter()
    /// Measured messages sent (echo/latency) or published (fanout).
    let sentMeasured = AtomicCounter()
    /// Deliveries due for those (fanout: per publisher, its channel's subscriber count).
    let expectedMeasured = AtomicCounter()
    /// Measured messages received (echo/latency responses; fanout deliveries to subscribers).
    let receivedMeasured = AtomicCounter()
    /// 1 once every connection of the worker is open or has failed.
    let ready = AtomicCounter()
    /// 1 once the worker will send no more measured messages.
    let sendingDone = AtomicCounter()
}

/// State shared by the main thread and every worker.
final class SharedState: Sendable {
    /// Monotonic ns at which load starts (0 = not yet). Measurement starts after the warm-up.
    let startNanos = AtomicCounter()
    let stop = AtomicCounter()
    let counters: [WorkerCounters]
    /// fanout: highest sequence number each publisher's ack tracker has seen from it (the
    /// tracker of channel ch is subscriber ch; with one channel, subscriber 0).
    let acks: [AtomicCounter]
    /// fanout: subscribers of each channel whose handshake succeeded. Final before the first
    /// publish (load starts after every worker is ready), so each published message is due to
    /// that many subscribers: a subscriber that never connected (within the tolerance) is not
    /// counted as a missing delivery.
    let establishedSubscribers: [AtomicCounter]

    init(workers: Int, publishers: Int, channels: Int) {
        counters = (0..<workers).map { _ in WorkerCounters() }
        acks = (0..<publishers).map { _ in AtomicCounter(-1) }
        establishedSubscribers = (0..<channels).map { _ in AtomicCounter() }
    }
}
