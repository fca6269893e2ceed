/// The exact result of a subscribe.
public enum SubscribeResult: Sendable, Equatable {
    case subscribed
    case alreadySubscribed
    /// The id is stale, or its connection is closing.
    case notFound
    /// The socket belongs to another shard (`ShardContext` only acts on its own shard's sockets).
    case notLocal
    /// `max_subscriptions_per_socket` reached (counted).
    case tooManySubscriptions
    /// `max_channels_per_shard` reached (counted).
    case tooManyChannels
}
