@testable import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Holds a shard's thread inside a closure until released (bounded, so a failing test cannot
/// hang the run): the shard drains nothing meanwhile, so deliveries to it back up.
final class ShardStall: Sendable {
    let entered = Atomic<Bool>(false)
    let released = Atomic<Bool>(false)

    func hold(_ broker: Broker, shard: Int) -> Bool {
        let stall = self
        guard broker.execute(onShard: shard, { _ in
            stall.entered.store(true, ordering: .releasing)
            let deadline = monotonicMilliseconds() + 30_000
            while !stall.released.load(ordering: .acquiring) && monotonicMilliseconds() < deadline { usleep(200) }
        }) == .queued else { return false }
        return waitUntil { entered.load(ordering: .acquiring) }
    }

    func release() { released.store(true, ordering: .releasing) }
}

extension ServerFixture {
    /// The largest per-shard value of a metric.
    func metricMax(_ name: String) -> Int {
        var best = 0
        for line in broker.metricsText().split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts[0].split(separator: "{")[0] == name { best = max(best, Int(parts[1]) ?? 0) }
        }
        return best
    }
}

/// A channel name owned by shard `owner` of `shardCount`.
func channelOwned(by owner: Int, of shardCount: Int, prefix: String) -> ChannelName {
    var k = 0
    while ChannelName("\(prefix)-\(k)").owner(shardCount: shardCount) != owner { k += 1 }
    return ChannelName("\(prefix)-\(k)")
}

@Suite("Publish backpressure: every path respects the delivery backlog bound", .serialized)
struct PublishBackpressureTests {
    @Test("stalled target; floods from the owner, another shard and a plain thread; backlog within bound, refusals counted",
          arguments: backends)
    func backlogBoundedOnEveryPath(backend: IOBackendKind) async throws {
        let bound = 64
        let fixture = try ServerFixture(backend: backend, shards: 3) { c in
            c.crossShardRingCapacity = 4
            c.maxPendingDeliveries = bound
        }
        defer { fixture.stop() }
        let broker = fixture.broker
        let (owner, stalled, other) = (0, 1, 2)
        let channel = channelOwned(by: owner, of: 3, prefix: "bp")
        let stall = ShardStall()
        defer { stall.release() }
        try #require(stall.hold(broker, shard: stalled))
        let flood = 2000

        // 1. On the owner itself (ShardContext.publish: the owner orders at once).
        let ownerRefused = try await broker.perform(onShard: owner) { context in
            var refused = 0
            for i in 0..<flood where context.publish(channel, .text("owner \(i)")) == .refused { refused += 1 }
            return refused
        }
        #expect(ownerRefused > 0, "the owner's own publishes never met the gate")
        let hitsAfterOwner = fixture.metric("switchboard_publish_backlog_limit_hits_total")
        #expect(hitsAfterOwner >= ownerRefused)

        // 2. From another shard (through the publish ring to the owner).
        let otherRefused = try await broker.perform(onShard: other) { context in
            var refused = 0
            for i in 0..<flood where context.publish(channel, .text("other \(i)")) == .refused { refused += 1 }
            return refused
        }
        #expect(otherRefused > 0, "a full publish ring never refused")

        // 3. From a thread that is no shard (through the owner's inbox).
        var queued = 0
        for i in 0..<flood where broker.publish(channel, .text("thread \(i)")) == .queued { queued += 1 }
        #expect(queued > 0)
        // The owner's inbox is FIFO: once this runs, every inbox publish above was handled.
        _ = try await broker.perform(onShard: owner) { _ in 0 }
        let hitsAfterInbox = fixture.metric("switchboard_publish_backlog_limit_hits_total")
        #expect(hitsAfterInbox > hitsAfterOwner, "inbox publishes were not refused at the gate")
        #expect(fixture.metric("switchboard_publishes_refused_total") >= hitsAfterInbox + otherRefused)

        // The backlog never went past its bound, and did reach it.
        let peak = fixture.metricMax("switchboard_cross_shard_pending_peak")
        #expect(peak <= bound)
        #expect(peak >= bound - 2, "the backlog never filled up: the test did not stall deliveries")

        // Released, the backlog drains and publishes flow again.
        stall.release()
        #expect(waitUntil(timeoutMilliseconds: 10_000) { fixture.metricMax("switchboard_cross_shard_pending") == 0 })
        let ordered = fixture.metric("switchboard_publishes_total")
        #expect(broker.publish(channel, .text("after")) == .queued)
        #expect(waitUntil { fixture.metric("switchboard_publishes_total") == ordered + 1 })
    }
}

@Suite("Delivery backlog: an owner waiting for room sleeps", .serialized)
struct DeliveryBacklogSleepTests {
    @Test("deliveries waiting for a stalled shard: the owner sleeps (no spin), and is woken as soon as there is room",
          arguments: backends)
    func ownerSleepsUntilRoom(backend: IOBackendKind) async throws {
        let fixture = try ServerFixture(backend: backend, shards: 2) { c in
            c.crossShardRingCapacity = 4
            c.maxPendingDeliveries = 64
            // One tick a second: an owner that only noticed room on its tick would take 16 s
            // (64 deliveries, 4 per ring's worth) to drain what the wake-ups drain at once.
            c.io.tickMilliseconds = 1000
        }
        defer { fixture.stop() }
        let broker = fixture.broker
        let (owner, stalled) = (0, 1)
        let channel = channelOwned(by: owner, of: 2, prefix: "sleep")
        let stall = ShardStall()
        defer { stall.release() }
        try #require(stall.hold(broker, shard: stalled))
        let refused = try await broker.perform(onShard: owner) { context in
            var refused = 0
            for i in 0..<200 where context.publish(channel, .text("m\(i)")) == .refused { refused += 1 }
            return refused
        }
        #expect(refused > 0, "the backlog never filled up: the test did not stall deliveries")
        #expect(waitUntil { fixture.metricMax("switchboard_cross_shard_pending") >= 60 })
        // The stalled shard makes no turn; the owner's turns are its ticks and little else.
        // (A measuring window, not a wait for an event: nothing is expected to happen in it.)
        let turnsBefore = fixture.metric("switchboard_loop_turns_total")
        usleep(500_000)
        let turns = fixture.metric("switchboard_loop_turns_total") - turnsBefore
        #expect(turns < 100, "the owner made \(turns) loop turns in 500 ms with nothing to do: it spins")
        stall.release()
        let start = monotonicMilliseconds()
        #expect(waitUntil(timeoutMilliseconds: 20_000) { fixture.metricMax("switchboard_cross_shard_pending") == 0 })
        let drainedMilliseconds = monotonicMilliseconds() - start
        #expect(drainedMilliseconds < 5_000, "the backlog took \(drainedMilliseconds) ms to drain: the owner was not woken")
    }
}
