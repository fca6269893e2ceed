/// What happens when a node connects with an id another live node already has.
public enum RPCDuplicateNodePolicy: String, Sendable, Equatable, CaseIterable {
    /// The new connection wins: the old node is sent `{"type":"close"}` (so a reference client
    /// stops instead of reconnecting and evicting the new one in turn), closed with 1000, and
    /// its pending requests fail with `disconnected`. The default, as the seed recommends.
    case replaceOld
    /// The old connection wins: the new one is sent `{"type":"close"}` and closed with 1008
    /// "duplicate node id" before `init`.
    case refuseNew
    /// Both stay, as the reference does: every server or remote client request to that id
    /// reaches all of them and the first answer wins.
    case allowBoth
}

/// Settings of the RPC protocol (server side). Every bound has a default, is validated by
/// `validate()`, and is counted in `RPCMetrics` when hit.
public struct RPCServerOptions: Sendable {
    /// Limits on one message (`RPCLimits`).
    public var limits = RPCLimits()
    /// Default timeout of requests a node sends (to its client or to other nodes), in ms. The
    /// reference hard-codes 1000 everywhere. Per-request overrides exist on every `send`.
    public var requestTimeoutMilliseconds = 1000
    /// How often the server pings each client, in ms (0: never).
    public var pingIntervalMilliseconds = 1000
    /// A ping not answered within this many ms closes the node (close code 1001, "ping
    /// timeout"; no `{"type":"close"}`, so a live client reconnects).
    public var pingTimeoutMilliseconds = 3000
    /// Delay between accepting the upgrade and sending `init`, in ms (at least one tick). The
    /// reference client loses an `init` that arrives in the same read as the 101 response.
    public var initDelayMilliseconds = 5
    /// Requests a node may have waiting for an answer (to its client and to other nodes);
    /// further `send`s fail with `overloaded`.
    public var maxPendingPerNode = 4096
    /// Requests a node may be handling at once (from its client and from other nodes); more
    /// are answered with the `overloaded` protocol error.
    public var maxInflightPerNode = 4096
    /// What to do with a second live node of the same id.
    public var duplicateNodes: RPCDuplicateNodePolicy = .replaceOld
    /// Longest node id, in UTF-8 bytes (longer ids from the application are refused with 1008).
    public var maxNodeIdBytes = 256
    /// Granularity of timeouts, `init` delays and ping checks, in ms.
    public var tickMilliseconds = 5
    /// With `cluster_engine = redis`: how long after a failed write of the cluster directory
    /// (Redis unreachable, or the connection lost before its answer) the id's entry is written
    /// again, in ms. Until then the id is not reachable from other processes.
    public var clusterDirectoryRetryMilliseconds = 250
    /// With `cluster_engine = redis`: how often each shard writes every id it owns to the
    /// cluster directory again, in ms (0: never). Repairs what a restarted Redis lost, or what
    /// the other processes removed while they had declared this one dead.
    public var clusterDirectoryRefreshMilliseconds = 30_000
    /// Ids in one directory write of a retry or a refresh (one script call each).
    public var clusterDirectoryBatchIds = 256

    public init() {}

    /// A description of the first invalid field, or nil.
    public func validate() -> String? {
        if let l = limits.validate() { return l }
        if requestTimeoutMilliseconds < 1 { return "rpc requestTimeoutMilliseconds must be positive, got \(requestTimeoutMilliseconds)" }
        if pingIntervalMilliseconds < 0 { return "rpc pingIntervalMilliseconds must be 0 (off) or positive, got \(pingIntervalMilliseconds)" }
        if pingTimeoutMilliseconds < 1 { return "rpc pingTimeoutMilliseconds must be positive, got \(pingTimeoutMilliseconds)" }
        if initDelayMilliseconds < 0 { return "rpc initDelayMilliseconds must not be negative, got \(initDelayMilliseconds)" }
        if maxPendingPerNode < 1 { return "rpc maxPendingPerNode must be positive, got \(maxPendingPerNode)" }
        if maxInflightPerNode < 1 { return "rpc maxInflightPerNode must be positive, got \(maxInflightPerNode)" }
        if maxNodeIdBytes < 1 { return "rpc maxNodeIdBytes must be positive, got \(maxNodeIdBytes)" }
        if tickMilliseconds < 1 || tickMilliseconds > 1000 { return "rpc tickMilliseconds must be in 1...1000, got \(tickMilliseconds)" }
        if clusterDirectoryRetryMilliseconds < 1 || clusterDirectoryRetryMilliseconds > 60_000 {
            return "rpc clusterDirectoryRetryMilliseconds must be in 1...60000, got \(clusterDirectoryRetryMilliseconds)"
        }
        if clusterDirectoryRefreshMilliseconds != 0 && clusterDirectoryRefreshMilliseconds < 1000 {
            return "rpc clusterDirectoryRefreshMilliseconds must be 0 (off) or at least 1000, got \(clusterDirectoryRefreshMilliseconds)"
        }
        if clusterDirectoryBatchIds < 1 || clusterDirectoryBatchIds > 4096 {
            return "rpc clusterDirectoryBatchIds must be in 1...4096, got \(clusterDirectoryBatchIds)"
        }
        return nil
    }
}
