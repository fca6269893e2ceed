@testable import Switchboard
import Testing

@Suite("OwnedChannels: epochs, retention, eviction")
struct OwnedChannelsTests {
    @Test("offsets continue within the retention; a new epoch after it; oldest evicted at capacity")
    func lifecycle() {
        var t = OwnedChannels(epochBase: 100, retentionMilliseconds: 3000, capacity: 2)
        let a: ChannelName = "a", b: ChannelName = "b", c: ChannelName = "c"
        #expect(t.next(a, nowMilliseconds: 1000).position == ChannelPosition(epoch: 100, offset: 1))
        #expect(t.next(a, nowMilliseconds: 1001).position == ChannelPosition(epoch: 100, offset: 2))
        #expect(t.next(a, nowMilliseconds: 1500).position == ChannelPosition(epoch: 100, offset: 3))
        // At 4000 `a` was published 2500 ms ago: kept, looked at again later.
        #expect(t.forgetIdle(nowMilliseconds: 4000) == 0)
        #expect(t.count == 1)
        #expect(t.forgetIdle(nowMilliseconds: 4499) == 0)
        // Forgotten at most one retention late (7000), never before 1500 + 3000.
        #expect(t.forgetIdle(nowMilliseconds: 7000) == 1)
        #expect(t.count == 0)
        let back = t.next(a, nowMilliseconds: 7001)
        #expect(back.position == ChannelPosition(epoch: 101, offset: 1))
        // Capacity 2: a third channel evicts the oldest.
        _ = t.next(b, nowMilliseconds: 7002)
        let third = t.next(c, nowMilliseconds: 7003)
        #expect(third.evicted)
        #expect(third.position == ChannelPosition(epoch: 103, offset: 1))
        #expect(t.count == 2)
        #expect(t.next(a, nowMilliseconds: 7004).position.epoch == 104)  // `a` was the one evicted
    }
}
