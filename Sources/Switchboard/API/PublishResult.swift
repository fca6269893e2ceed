/// The result of `ShardContext.publish`.
public enum PublishResult: Sendable, Equatable {
    /// Accepted for ordering and fan-out. `offset` is the channel's message number when this
    /// shard owns the channel (ordered before the call returned), nil when it went to the owner.
    case accepted(offset: UInt64?)
    /// The ring to the channel's owner was full, or (on the owner) its delivery backlog was at
    /// `max_pending_deliveries` (counted in `switchboard_publishes_refused_total`; the latter
    /// also in `switchboard_publish_backlog_limit_hits_total`).
    case refused
}
