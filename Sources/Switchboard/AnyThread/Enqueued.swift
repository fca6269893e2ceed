/// The result of a fire-and-forget ``Broker`` call: the work was queued to its shard (it runs
/// when the shard next turns; its own outcome is not reported), or refused now.
public enum Enqueued: Sendable, Equatable {
    case queued
    case refused(RefusalReason)

    /// Why a shard did not take work.
    public enum RefusalReason: Sendable, Equatable {
        /// The shard's inbox (or the ring to a channel's owner) is full: back off (counted in
        /// `switchboard_inbox_full_total` / `switchboard_publishes_refused_total`).
        case full
        /// The broker is stopping or stopped.
        case stopped
        /// The id or shard index does not belong to this broker.
        case unknownShard
    }

    public var isQueued: Bool { self == .queued }
}
