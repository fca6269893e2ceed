import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Tallies how each async call ended.
final class CallTally: Sendable {
    let returned = Atomic<Int>(0)
    let answered = Atomic<Int>(0)
    let stopped = Atomic<Int>(0)
    let other = Atomic<Int>(0)
    let shutdownDone = Atomic<Bool>(false)
    func count(_ outcome: Result<Void, BrokerError>) {
        switch outcome {
        case .success: answered.add(1, ordering: .relaxed)
        case .failure(.stopped): stopped.add(1, ordering: .relaxed)
        case .failure: other.add(1, ordering: .relaxed)
        }
        returned.add(1, ordering: .releasing)
    }
}

@Suite("Broker: every async call returns after shutdown", .serialized)
struct BrokerShutdownRaceTests {
    /// One of the broker's exact calls, chosen by `i`, on a socket id that may or may not be
    /// live (the answer does not matter, only that there is one).
    static func call(_ broker: Broker, _ i: Int) async -> Result<Void, BrokerError> {
        let id = SocketID(shard: i % 2, slot: i % 7, generation: 1)
        let channel = ChannelName("race-\(i % 13)")
        do throws(BrokerError) {
            switch i % 6 {
            case 0: _ = try await broker.subscribe(id, channel)
            case 1: _ = try await broker.unsubscribe(id, channel)
            case 2: _ = try await broker.subscriptions(of: id)
            case 3: _ = try await broker.subscriberCount(channel)
            case 4: _ = try await broker.perform(onShard: i % 2) { context in context.localSubscriberCount(channel) }
            default: _ = try await broker.perform(onShard: (i + 1) % 2) { context in context.shardIndex }
            }
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    /// Rounds per backend: the losing side of the race (a call queued just after the shard's
    /// last inbox pass) is rare, so the race is run many times.
    static let rounds = 5

    @Test("1,000 async calls racing shutdown: every one returns (answer or .stopped)", arguments: backends)
    func asyncCallsRaceShutdown(backend: IOBackendKind) async throws {
        for round in 0..<Self.rounds {
            try await raceOnce(backend: backend, round: round)
        }
    }

    func raceOnce(backend: IOBackendKind, round: Int) async throws {
        let fixture = try ServerFixture(backend: backend, shards: 2)
        let broker = fixture.broker
        let tally = CallTally()
        let total = 1000
        for i in 0..<total {
            Task.detached { tally.count(await Self.call(broker, i)) }
        }
        // Stop from a plain thread (shutdown blocks) once the calls are under way.
        while tally.returned.load(ordering: .acquiring) < 20 { await Task.yield() }
        let stopper = OSThread.spawn(name: "stopper") {
            broker.shutdown(graceMilliseconds: 0)
            tally.shutdownDone.store(true, ordering: .releasing)
        }!
        // Bounded wait: a call that never returns fails the test here instead of hanging it.
        let deadline = ContinuousClock.now + .seconds(20)
        while tally.returned.load(ordering: .acquiring) < total || !tally.shutdownDone.load(ordering: .acquiring) {
            if ContinuousClock.now > deadline { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        let returned = tally.returned.load(ordering: .acquiring)
        #expect(returned == total, "round \(round): \(total - returned) of \(total) async calls never returned")
        let stopped = tally.shutdownDone.load(ordering: .acquiring)
        #expect(stopped, "shutdown did not finish")
        #expect(tally.other.load(ordering: .acquiring) == 0)
        if stopped { stopper.join() }
        // After shutdown, every call throws .stopped at once.
        for i in 0..<60 {
            let outcome = await Self.call(broker, i)
            guard case .failure(.stopped) = outcome else {
                Issue.record("call \(i) after shutdown: \(outcome), expected .stopped")
                continue
            }
        }
        if round == 0 { print("\(backend): answered \(tally.answered.load(ordering: .acquiring)), stopped \(tally.stopped.load(ordering: .acquiring))") }
    }
}
