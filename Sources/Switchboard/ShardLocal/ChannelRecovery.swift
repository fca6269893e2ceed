import SwitchboardIO

/// One shard's recoveries in flight (cluster only): the channels whose missed messages are
/// being read back from Redis's history, and the messages that arrived for them meanwhile.
/// Shard thread only; the channel engine drives it (ChannelEngine+Cluster.swift).
///
/// Why buffer: the history read travels on the connection that carries the channel's
/// subscription, after it, so every message that arrives before its answer was published
/// before the read ran (it is in the answer, or lost with the history), and every message
/// after it is newer. Holding the ones in between until the answer comes keeps the channel in
/// order: first what was missed, then what came meanwhile minus what the history already gave.
///
/// Lifecycle of a channel here: absent → `reading` (one read in flight, messages buffered, at
/// most `maxMessages`; past that `overflowed`) → absent when the answer comes (`finish`), or
/// when the channel's last local subscriber leaves (`cancel`: a late answer is then ignored,
/// recognised by its generation).
struct ChannelRecovery {
    /// A message that arrived while its channel's read was in flight.
    struct Held {
        let position: ChannelPosition
        let frame: OutboundBytes
    }

    private struct Reading {
        let generation: UInt64
        var held: [Held] = []
        var overflowed = false
    }

    /// `cluster_recovery_max_messages`: the most messages one read may return, and the most
    /// held while it is in flight. 0: no reads (every gap is reported as not recovered).
    let maxMessages: Int
    private var reading: [ChannelName: Reading] = [:]
    private var nextGeneration: UInt64 = 0

    init(maxMessages: Int) {
        precondition(maxMessages >= 0, "cluster_recovery_max_messages is validated >= 0")
        self.maxMessages = maxMessages
    }

    /// Channels with a read in flight (at most one each).
    var count: Int { reading.count }

    /// On every delivered message: no lookup while nothing is being recovered (the usual case).
    func isReading(_ channel: ChannelName) -> Bool { !reading.isEmpty && reading[channel] != nil }

    /// Starts a read of `channel`; returns its generation (the answer brings it back).
    mutating func begin(_ channel: ChannelName) -> UInt64 {
        assert(reading[channel] == nil, "one recovery read per channel at a time")
        nextGeneration &+= 1
        reading[channel] = Reading(generation: nextGeneration)
        return nextGeneration
    }

    /// Holds a message of a channel being read. Past `maxMessages` the read is spoiled: the
    /// messages are dropped and the gap will be reported as not recovered.
    mutating func hold(_ channel: ChannelName, _ message: Held) {
        guard var r = reading[channel] else { return assertionFailure("held for a channel not being read") }
        if r.overflowed { return }
        if r.held.count >= maxMessages {
            r.overflowed = true
            r.held = []
        } else {
            r.held.append(message)
        }
        reading[channel] = r
    }

    /// The answer of read `generation` came: the messages held meanwhile, and whether the
    /// limit spoiled them; nil when the read was cancelled (or superseded) since.
    mutating func finish(_ channel: ChannelName, generation: UInt64) -> (held: [Held], overflowed: Bool)? {
        guard let r = reading[channel], r.generation == generation else { return nil }
        reading.removeValue(forKey: channel)
        return (r.held, r.overflowed)
    }

    /// The channel's last local subscriber left: forget its read (its answer is ignored).
    mutating func cancel(_ channel: ChannelName) {
        reading.removeValue(forKey: channel)
    }
}
