import Switchboard

/// The broker configuration of the in-process cluster tests (several brokers in one test
/// process over one real redis-server the test started: `RedisServer`), shared by the cluster,
/// RPC and broadcaster test targets.
extension BrokerConfiguration {
    /// Joins the cluster over the test's redis-server on 127.0.0.1:`redisPort` as node
    /// `nodeID`, reconnecting 20 ms after a loss at first (a Redis the test restarts is back
    /// soon; the default backoff would only slow the test down).
    public mutating func joinCluster(redisPort: Int, nodeID: Int) {
        cluster.engine = .redis
        cluster.redisURL = "redis://127.0.0.1:\(redisPort)"
        cluster.nodeID = nodeID
        cluster.initialBackoffMilliseconds = 20
    }

    /// One node of a protocol's in-process cluster test: 127.0.0.1 on an ephemeral port, two
    /// shards on `backend` (so cross-shard paths run too), a 10 ms tick, no permessage-deflate
    /// (the tests read exact frames), in the cluster over the test's Redis (`joinCluster`).
    public static func clusterTestNode(_ nodeID: Int, redisPort: Int, backend: IOBackendKind) -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.io.shardCount = 2
        configuration.io.backend = backend
        configuration.io.tickMilliseconds = 10
        configuration.webSocket.perMessageDeflate = false
        configuration.joinCluster(redisPort: redisPort, nodeID: nodeID)
        return configuration
    }
}
