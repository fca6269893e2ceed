import SwitchboardCluster

/// The `cluster_*` keys of `BrokerConfiguration` (issue 13), kept apart from the core's.
extension BrokerConfiguration {
    static let clusterKeys: [(key: String, help: String)] = [
        ("cluster_engine", "memory | redis: memory is one node (no Redis); redis carries channels between nodes through cluster_redis_url"),
        ("cluster_redis_mode", "standalone | cluster: one Redis server, or a Redis Cluster (7.0+; cluster_redis_url names one of its masters): channels map to hash slots, sharded pub/sub on each slot's master"),
        ("cluster_redis_url", "redis://HOST:PORT or redis://HOST:PORT/DB (HOST: an IP literal, or a name resolved once at start-up); credentials may be given as redis://USER:PASSWORD@HOST:PORT or redis://:PASSWORD@HOST:PORT (percent-encoded; printed with the password as ***); no TLS"),
        ("cluster_redis_username", "Redis ACL user every connection authenticates as (HELLO 3 AUTH); empty: default (the requirepass user); needs a password"),
        ("cluster_redis_password", "Redis password (requirepass, or the ACL user's); empty: no AUTH; never logged nor printed (prefer cluster_redis_password_file); a refused password is retried with the reconnect backoff (metric switchboard_cluster_redis_auth_failures_total)"),
        ("cluster_redis_password_file", "file holding the Redis password (one trailing newline ignored, at most 64 KiB), read once at start-up; give the password in one place only"),
        ("cluster_node_id", "this node's number 0...255, unique in the cluster"),
        ("cluster_key_prefix", "prefix of every Redis key and pub/sub channel of the cluster"),
        ("cluster_history_size", "messages of each channel Redis keeps (bounded history, trimmed by the publish script); 0 keeps none"),
        ("cluster_history_ttl_ms", "how long Redis keeps a channel's offset and history after its last publish; the next publish starts a new epoch"),
        ("cluster_max_pending_publishes", "publishes one shard may have waiting for Redis's answer; beyond, publishes are refused (metric switchboard_cluster_publishes_over_limit_total)"),
        ("cluster_redis_connect_timeout_ms", "a Redis connect not finished within this time is abandoned and retried"),
        ("cluster_redis_read_timeout_ms", "a Redis connection that owes replies and sends nothing for this long is dropped and reconnected (metric switchboard_outbound_read_timeouts_total)"),
        ("cluster_redis_backoff_ms", "first delay before reconnecting to Redis; doubles per failure, with up to 50% jitter"),
        ("cluster_redis_max_backoff_ms", "longest delay between reconnect attempts"),
        ("cluster_heartbeat_ms", "how often a node renews its membership in Redis"),
        ("cluster_node_ttl_ms", "a node whose membership was not renewed for this long is no longer a member (Broker.clusterMembers) and is declared dead: every other node hears it (WorkerHandler.handleClusterNodeDied) within cluster_node_ttl_ms + cluster_heartbeat_ms (metric switchboard_cluster_node_deaths_total); at least 2 x cluster_heartbeat_ms"),
        ("cluster_recovery_max_messages", "most messages of one channel a shard reads back from Redis's history to give its subscribers what they missed (after a reconnect, or a gap in offsets); more missed, or 0, is reported as not recovered (WorkerHandler.handleChannelGap; metric switchboard_cluster_recoveries_over_limit_total)"),
        ("cluster_remote_call_timeout_ms", "how long subscribe, unsubscribe and subscriptions(of:) on a socket of another node wait for that node's answer (then BrokerError.timedOut; metric switchboard_cluster_remote_call_timeouts_total)"),
        ("cluster_cleanup_batch_entries", "entries of a dead node's registrations one step of the connection broker's or RPC's clean-up script reads from Redis (HSCAN COUNT): Redis serves nobody else while a step runs (about 4 ms per 1,000), other commands run between steps (1...100000)"),
    ]

    func clusterValue(forKey key: String) -> String? {
        switch key {
        case "cluster_engine": return cluster.engine.rawValue
        case "cluster_redis_mode": return cluster.redisMode.rawValue
        case "cluster_redis_url": return "\"\(cluster.redactedRedisURL)\""
        case "cluster_redis_username": return "\"\(cluster.redisUsername)\""
        // A secret is never printed: a set password shows as ***, which no file should carry back.
        case "cluster_redis_password": return cluster.redisPassword.isEmpty ? "\"\"" : "\"***\""
        case "cluster_redis_password_file": return "\"\(cluster.redisPasswordFile)\""
        case "cluster_node_id": return String(cluster.nodeID)
        case "cluster_key_prefix": return "\"\(cluster.keyPrefix)\""
        case "cluster_history_size": return String(cluster.historySize)
        case "cluster_history_ttl_ms": return String(cluster.historyTTLMilliseconds)
        case "cluster_max_pending_publishes": return String(cluster.maxPendingPublishes)
        case "cluster_redis_connect_timeout_ms": return String(cluster.connectTimeoutMilliseconds)
        case "cluster_redis_read_timeout_ms": return String(cluster.readTimeoutMilliseconds)
        case "cluster_redis_backoff_ms": return String(cluster.initialBackoffMilliseconds)
        case "cluster_redis_max_backoff_ms": return String(cluster.maxBackoffMilliseconds)
        case "cluster_heartbeat_ms": return String(cluster.heartbeatMilliseconds)
        case "cluster_node_ttl_ms": return String(cluster.nodeTTLMilliseconds)
        case "cluster_recovery_max_messages": return String(cluster.recoveryMaxMessages)
        case "cluster_remote_call_timeout_ms": return String(cluster.remoteCallTimeoutMilliseconds)
        case "cluster_cleanup_batch_entries": return String(cluster.cleanUpBatchEntries)
        default: return nil
        }
    }

    mutating func setCluster(_ key: String, _ value: String) throws(ConfigurationError) {
        func int() throws(ConfigurationError) -> Int {
            guard let v = Int(value) else { throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not an integer") }
            return v
        }
        switch key {
        case "cluster_engine":
            guard let kind = ClusterEngineKind(rawValue: value) else { throw ConfigurationError(line: 0, message: "cluster_engine: '\(value)' is not memory or redis") }
            cluster.engine = kind
        case "cluster_redis_mode":
            guard let mode = ClusterRedisMode(rawValue: value) else { throw ConfigurationError(line: 0, message: "cluster_redis_mode: '\(value)' is not standalone or cluster") }
            cluster.redisMode = mode
        case "cluster_redis_url": cluster.redisURL = value
        case "cluster_redis_username": cluster.redisUsername = value
        case "cluster_redis_password": cluster.redisPassword = value
        case "cluster_redis_password_file": cluster.redisPasswordFile = value
        case "cluster_node_id": cluster.nodeID = try int()
        case "cluster_key_prefix": cluster.keyPrefix = value
        case "cluster_history_size": cluster.historySize = try int()
        case "cluster_history_ttl_ms": cluster.historyTTLMilliseconds = try int()
        case "cluster_max_pending_publishes": cluster.maxPendingPublishes = try int()
        case "cluster_redis_connect_timeout_ms": cluster.connectTimeoutMilliseconds = try int()
        case "cluster_redis_read_timeout_ms": cluster.readTimeoutMilliseconds = try int()
        case "cluster_redis_backoff_ms": cluster.initialBackoffMilliseconds = try int()
        case "cluster_redis_max_backoff_ms": cluster.maxBackoffMilliseconds = try int()
        case "cluster_heartbeat_ms": cluster.heartbeatMilliseconds = try int()
        case "cluster_node_ttl_ms": cluster.nodeTTLMilliseconds = try int()
        case "cluster_recovery_max_messages": cluster.recoveryMaxMessages = try int()
        case "cluster_remote_call_timeout_ms": cluster.remoteCallTimeoutMilliseconds = try int()
        case "cluster_cleanup_batch_entries": cluster.cleanUpBatchEntries = try int()
        default: throw ConfigurationError(line: 0, message: "unknown option '\(key)'")
        }
    }
}
