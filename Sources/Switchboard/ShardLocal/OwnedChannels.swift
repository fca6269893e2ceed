import DequeModule

/// The channels a shard owns and that are in use: each one's epoch and last offset.
/// Shard thread only (one per `ChannelEngine`).
///
/// An entry is created by the first publish to a channel it does not hold, with a new epoch
/// (see ``ChannelPosition``), and forgotten once the channel went `retentionMilliseconds`
/// without a publish — checked on the shard's tick, so an idle channel costs nothing after at
/// most twice the retention — or, oldest first, when `capacity` entries are held and a new
/// channel needs one.
///
/// `expiry` holds every entry exactly once, in the order of the time it was last checked
/// (`stamp`, non-decreasing from front to back): the sweep only looks at the front, so it and
/// the eviction are O(1) per entry, with no scan of the table.
struct OwnedChannels {
    struct Entry {
        let epoch: UInt64
        var lastOffset: UInt64
        var lastPublishMilliseconds: Int64
    }

    private var entries: [ChannelName: Entry] = [:]
    private var expiry = Deque<(channel: ChannelName, stampMilliseconds: Int64)>()
    private var nextEpoch: UInt64
    let retentionMilliseconds: Int64
    let capacity: Int

    /// - Parameter epochBase: the first epoch; a random value per shard start.
    init(epochBase: UInt64, retentionMilliseconds: Int, capacity: Int) {
        precondition(retentionMilliseconds >= 0 && capacity >= 1)
        nextEpoch = epochBase
        self.retentionMilliseconds = Int64(retentionMilliseconds)
        self.capacity = capacity
    }

    var count: Int { entries.count }

    /// The position of a new message of `channel`; `evicted` when another channel's entry was
    /// dropped to make room (the table was at `capacity`).
    mutating func next(_ channel: ChannelName, nowMilliseconds now: Int64) -> (position: ChannelPosition, evicted: Bool) {
        if let i = entries.index(forKey: channel) {
            entries.values[i].lastOffset &+= 1
            entries.values[i].lastPublishMilliseconds = now
            let e = entries.values[i]
            return (ChannelPosition(epoch: e.epoch, offset: e.lastOffset), false)
        }
        var evicted = false
        if entries.count >= capacity, let oldest = expiry.popFirst() {
            let removed = entries.removeValue(forKey: oldest.channel)
            assert(removed != nil, "expiry and entries disagree about \(oldest.channel)")
            evicted = true
        }
        let epoch = nextEpoch
        nextEpoch &+= 1
        entries[channel] = Entry(epoch: epoch, lastOffset: 1, lastPublishMilliseconds: now)
        assert(expiry.last.map { $0.stampMilliseconds <= now } ?? true, "the clock went backwards")
        expiry.append((channel, now))
        assert(expiry.count == entries.count)
        return (ChannelPosition(epoch: epoch, offset: 1), evicted)
    }

    /// Forgets the channels not published for `retentionMilliseconds`; returns how many.
    mutating func forgetIdle(nowMilliseconds now: Int64) -> Int {
        var forgotten = 0
        while let front = expiry.first, front.stampMilliseconds + retentionMilliseconds <= now {
            expiry.removeFirst()
            guard let entry = entries[front.channel] else {
                assertionFailure("expiry and entries disagree about \(front.channel)")
                continue
            }
            if entry.lastPublishMilliseconds + retentionMilliseconds <= now {
                entries.removeValue(forKey: front.channel)
                forgotten += 1
            } else {
                // Published since it was stamped: look again one retention from now (at most
                // one retention late), which keeps the stamps in order.
                expiry.append((front.channel, now))
            }
        }
        assert(expiry.count == entries.count)
        // Dictionaries and deques keep their peak capacity; an empty table gives it back.
        if entries.isEmpty && entries.capacity > 1024 {
            entries = [:]
            expiry = Deque()
        }
        return forgotten
    }
}
