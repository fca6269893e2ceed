/// Limits of one channel's history on its owner shard. All zero: no history (offsets and the
/// epoch are still kept, so a client learns that it cannot recover).
public struct BroadcasterHistoryLimits: Sendable, Equatable {
    /// Most messages kept.
    public var maxMessages: Int
    /// Most payload bytes kept (the sum of `payload.count`).
    public var maxBytes: Int
    /// Messages older than this are dropped; 0 keeps them until count or bytes push them out.
    public var maxAgeMilliseconds: Int

    public init(maxMessages: Int = 0, maxBytes: Int = 0, maxAgeMilliseconds: Int = 0) {
        precondition(maxMessages >= 0 && maxBytes >= 0 && maxAgeMilliseconds >= 0)
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAgeMilliseconds = maxAgeMilliseconds
    }

    public static let off = BroadcasterHistoryLimits()
    public var isOff: Bool { maxMessages == 0 || maxBytes == 0 }
}

/// Which channels keep history: the first rule whose pattern matches wins; none matching means
/// no history. A pattern is a channel name, or a prefix followed by `*` (`chat:*`), or `*`.
public struct BroadcasterHistoryRule: Sendable, Equatable {
    public var pattern: String
    public var limits: BroadcasterHistoryLimits

    public init(pattern: String, limits: BroadcasterHistoryLimits) {
        self.pattern = pattern
        self.limits = limits
    }

    public func matches(_ channel: String) -> Bool {
        if pattern.hasSuffix("*") { return channel.hasPrefix(pattern.dropLast()) }
        return channel == pattern
    }

    /// The limits for `channel` under `rules`.
    public static func limits(for channel: String, in rules: [BroadcasterHistoryRule]) -> BroadcasterHistoryLimits {
        rules.first { $0.matches(channel) }?.limits ?? .off
    }
}

/// What the owner answers to `subscribe` with `since`.
public enum BroadcasterRecovery: Sendable, Equatable {
    /// Every message after the client's offset, in order; `lastOffset` is the channel's offset
    /// when the owner answered (live messages up to it are duplicates of these).
    case recovered([BroadcasterMessage], lastOffset: Int)
    /// The history does not cover the gap (or the epoch differs); the client must reload.
    case notRecovered(lastOffset: Int)

    public var lastOffset: Int {
        switch self {
        case .recovered(_, let o), .notRecovered(let o): o
        }
    }
}

/// One channel's log on its owner shard: the offset counter, the epoch, and the bounded
/// history. Owner shard only (not Sendable state; messages it returns are values).
///
/// Invariant: `messages` holds consecutive offsets ending at `lastOffset` (or is empty), and
/// respects the limits after every `append` and `trim`.
public struct BroadcasterChannelLog {
    public let epoch: String
    public private(set) var lastOffset: Int = 0
    public let limits: BroadcasterHistoryLimits
    /// Oldest first; `head` is the index of the oldest retained message (amortized O(1) removal).
    private var messages: [BroadcasterMessage] = []
    private var head = 0
    public private(set) var retainedBytes = 0

    public init(epoch: String, limits: BroadcasterHistoryLimits) {
        self.epoch = epoch
        self.limits = limits
    }

    /// The log as another owner holds it (Redis, in a cluster): its epoch, the last offset it
    /// gave out and the messages it kept, oldest first. They are kept only when their offsets
    /// are consecutive and end at `lastOffset` (else none: a history with a hole must not answer
    /// a recovery); the limits apply at the next `recover` or `trim`.
    init(epoch: String, lastOffset: Int, history: [BroadcasterMessage], limits: BroadcasterHistoryLimits) {
        precondition(lastOffset >= 0)
        self.epoch = epoch
        self.limits = limits
        self.lastOffset = lastOffset
        let consecutive = zip(history, history.dropFirst()).allSatisfy { $0.offset + 1 == $1.offset }
        guard consecutive, history.last?.offset == lastOffset else { return }
        messages = history
        retainedBytes = history.reduce(0) { $0 + $1.payload.count }
    }

    public var retainedCount: Int { messages.count - head }

    /// Assigns the next offset to `message` (its `offset` and `epoch` are overwritten), keeps it
    /// when the channel has history, and returns it.
    public mutating func append(_ message: BroadcasterMessage, nowNanoseconds: Int64) -> BroadcasterMessage {
        var m = message
        lastOffset += 1
        m.offset = lastOffset
        m.epoch = epoch
        if !limits.isOff && m.payload.count <= limits.maxBytes {
            messages.append(m)
            retainedBytes += m.payload.count
        } else {
            // Not kept (history off, or larger than the whole budget): the history can no
            // longer cover this offset, so everything older is useless too.
            messages.removeAll(keepingCapacity: true)
            head = 0
            retainedBytes = 0
        }
        trim(nowNanoseconds: nowNanoseconds)
        return m
    }

    /// Drops messages beyond the count, byte and age limits.
    public mutating func trim(nowNanoseconds: Int64) {
        let oldestAllowed = limits.maxAgeMilliseconds > 0 ? nowNanoseconds - Int64(limits.maxAgeMilliseconds) * 1_000_000 : Int64.min
        while head < messages.count,
              retainedCount > limits.maxMessages || retainedBytes > limits.maxBytes || messages[head].createTimeNanoseconds < oldestAllowed {
            retainedBytes -= messages[head].payload.count
            head += 1
        }
        // Compact when the dead prefix dominates.
        if head > 64 && head * 2 > messages.count {
            messages.removeFirst(head)
            head = 0
        }
        assert(retainedBytes >= 0 && retainedCount >= 0)
    }

    /// The messages after `position`, if the history still holds all of them.
    public mutating func recover(since position: BroadcasterRecoveryPosition, nowNanoseconds: Int64) -> BroadcasterRecovery {
        trim(nowNanoseconds: nowNanoseconds)
        guard position.epoch == epoch, position.offset <= lastOffset else { return .notRecovered(lastOffset: lastOffset) }
        if position.offset == lastOffset { return .recovered([], lastOffset: lastOffset) }
        guard retainedCount > 0 else { return .notRecovered(lastOffset: lastOffset) }
        let oldest = messages[head].offset
        guard oldest <= position.offset + 1 else { return .notRecovered(lastOffset: lastOffset) }
        let start = head + (position.offset + 1 - oldest)
        assert(messages[start].offset == position.offset + 1 && messages.last!.offset == lastOffset)
        return .recovered(Array(messages[start...]), lastOffset: lastOffset)
    }
}
