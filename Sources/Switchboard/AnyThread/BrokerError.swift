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
    /// `cluster_engine = redis`: a call on a socket of another node found no node to take it
    /// (that node is down, or not connected to Redis); counted in
    /// `switchboard_cluster_remote_calls_node_down_total`.
    case nodeUnavailable
    /// `cluster_engine = redis`: a call on a socket of another node was taken but not answered
    /// within `cluster_remote_call_timeout_ms` (the node died or is stalled); counted in
    /// `switchboard_cluster_remote_call_timeouts_total`. Whether it ran there is unknown.
    case timedOut
}
