/// Why an exact (`async`) ``Broker`` call could not run.
public enum BrokerError: Error, Sendable, Equatable {
    /// The broker is stopping or stopped: the shard will not run the call.
    case stopped
    /// The shard's inbox is full (counted in `switchboard_inbox_full_total`); retry later.
    case inboxFull
    /// The id or shard index does not belong to this broker.
    case unknownShard
    /// `cluster_engine = redis` and this node is not connected to Redis now (a cluster-wide
    /// question has no answer); retry later.
    case clusterUnavailable
}
