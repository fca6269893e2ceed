/// A channel as the cluster engine carries it: one of the broker's channels (`Broker.publish`,
/// WebSocket subscribers of the channel engine), or one of a protocol's own channels (the
/// broadcaster's), in a **space** named by the protocol. Both go through the same engine
/// (interest, one script for offset, history and fan-out, one order per channel); the space only
/// keeps their Redis names apart, so a broker channel and a protocol channel never meet whatever
/// their bytes.
package struct ClusterChannel: Hashable, Sendable {
    /// nil: a broker channel. Else the protocol's space (`bc`: the broadcaster), lower-case
    /// ASCII letters, no `:`, so its names can be taken apart again.
    package let space: [UInt8]?
    package let name: [UInt8]

    /// One of the broker's channels.
    package static func broker(_ name: [UInt8]) -> ClusterChannel { ClusterChannel(space: nil, name: name) }

    /// A channel of protocol space `space` (1...8 lower-case letters).
    package static func inSpace(_ space: StaticString, _ name: [UInt8]) -> ClusterChannel {
        let bytes = space.withUTF8Buffer { Array($0) }
        precondition((1...8).contains(bytes.count) && bytes.allSatisfy { (0x61...0x7a).contains($0) }, "a space is 1...8 lower-case letters")
        return ClusterChannel(space: bytes, name: name)
    }

    private init(space: [UInt8]?, name: [UInt8]) {
        self.space = space
        self.name = name
    }

    /// For `ClusterChannelNames.channel(ofPubSub:)` only: a space already checked there.
    fileprivate init(parsedSpace: [UInt8]?, name: [UInt8]) { self.init(space: parsedSpace, name: name) }
}

/// How much of a channel's history Redis keeps on a publish: the broker's channels use the
/// engine's settings (`cluster_history_size`, `cluster_history_ttl_ms`); a protocol sets its own
/// per channel (the broadcaster: its history rule's `maxMessages` and age).
package struct ClusterHistoryLimits: Sendable, Equatable {
    /// Messages kept; 0 keeps none and empties what was kept (a history with a hole could not
    /// answer a recovery truthfully).
    package var messages: Int
    /// How long the channel's offset and history live after this publish.
    package var ttlMilliseconds: Int

    package init(messages: Int, ttlMilliseconds: Int) {
        precondition(messages >= 0 && ttlMilliseconds > 0)
        self.messages = messages
        self.ttlMilliseconds = ttlMilliseconds
    }
}

/// A channel's stream as Redis holds it (`ClusterShardEngine.readStream`): its epoch, the last
/// offset given out, and the kept history, oldest first (offsets consecutive, ending at
/// `lastOffset`, or empty).
package struct ClusterStream: Sendable {
    package struct Entry: Sendable {
        package let position: ClusterPosition
        package let kind: ClusterMessageKind
        package let payload: [UInt8]
    }

    package let epoch: UInt64
    package let lastOffset: UInt64
    package let history: [Entry]
}

/// The Redis names of cluster channels, in one place (the engine subscribes, publishes and reads
/// with them; tests ask Redis about them). Pure.
///
/// | channel | keys | pub/sub channel |
/// |---|---|---|
/// | broker, one Redis | `P:{NAME}:meta`, `P:{NAME}:history` | `P:ch:NAME` |
/// | broker, Redis Cluster | `P:{c:NAME}:meta`, `P:{c:NAME}:history` | `P:{c:NAME}:pub` (sharded) |
/// | protocol space S, both modes | `P:p:{S:NAME}:meta`, `P:p:{S:NAME}:history` | `P:p:{S:NAME}:pub` (sharded in a Redis Cluster) |
///
/// The three shapes differ right after `P:` (`{`, `ch:`, `p:{`) and the prefix has no braces,
/// so no two channels share a name. A channel's keys and its pub/sub channel share one hash tag
/// (one Redis Cluster slot: the publish script touches all three).
package struct ClusterChannelNames: Sendable {
    private let brokerKeyPrefix: [UInt8]
    private let brokerPubSubPrefix: [UInt8]
    private let protocolPrefix: [UInt8]
    private let sharded: Bool
    private static let pubSuffix = Array("}:pub".utf8)

    package init(keyPrefix: String, sharded: Bool) {
        self.sharded = sharded
        brokerKeyPrefix = Array((keyPrefix + (sharded ? ":{c:" : ":{")).utf8)
        brokerPubSubPrefix = Array((keyPrefix + (sharded ? ":{c:" : ":ch:")).utf8)
        protocolPrefix = Array((keyPrefix + ":p:{").utf8)
    }

    private func tagged(_ channel: ClusterChannel) -> [UInt8] {
        guard let space = channel.space else { return brokerKeyPrefix + channel.name }
        return protocolPrefix + space + [UInt8(ascii: ":")] + channel.name
    }

    package func meta(_ channel: ClusterChannel) -> [UInt8] { tagged(channel) + Array("}:meta".utf8) }
    package func history(_ channel: ClusterChannel) -> [UInt8] { tagged(channel) + Array("}:history".utf8) }

    package func pubSub(_ channel: ClusterChannel) -> [UInt8] {
        if channel.space == nil, !sharded { return brokerPubSubPrefix + channel.name }
        return tagged(channel) + Self.pubSuffix
    }

    /// The channel of one of these pub/sub names, or nil.
    package func channel(ofPubSub name: [UInt8]) -> ClusterChannel? {
        if name.starts(with: protocolPrefix) {
            guard name.count >= protocolPrefix.count + Self.pubSuffix.count, name.suffix(Self.pubSuffix.count).elementsEqual(Self.pubSuffix) else { return nil }
            let inner = name[protocolPrefix.count..<(name.count - Self.pubSuffix.count)]
            guard let colon = inner.firstIndex(of: UInt8(ascii: ":")), colon > inner.startIndex,
                  inner[..<colon].allSatisfy({ (0x61...0x7a).contains($0) }) else { return nil }
            return ClusterChannel(parsedSpace: Array(inner[..<colon]), name: Array(inner[inner.index(after: colon)...]))
        }
        guard name.starts(with: brokerPubSubPrefix) else { return nil }
        guard sharded else { return .broker(Array(name[brokerPubSubPrefix.count...])) }
        guard name.count >= brokerPubSubPrefix.count + Self.pubSuffix.count, name.suffix(Self.pubSuffix.count).elementsEqual(Self.pubSuffix) else { return nil }
        return .broker(Array(name[brokerPubSubPrefix.count..<(name.count - Self.pubSuffix.count)]))
    }
}
