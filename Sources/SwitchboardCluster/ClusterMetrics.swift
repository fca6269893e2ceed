import SwitchboardIO

/// One shard's cluster counters (written by the shard, read from any thread).
package final class ClusterMetrics: Sendable {
    package let authFailures = Counter("switchboard_cluster_redis_auth_failures_total", help: "Redis connections whose handshake (HELLO 3 AUTH) Redis refused: wrong password or user, or AUTH missing (retried with the reconnect backoff)")
    package let publishes = Counter("switchboard_cluster_publishes_total", help: "Channel messages this shard sent to Redis to order and fan out")
    package let publishesUnavailable = Counter("switchboard_cluster_publishes_unavailable_total", help: "Publishes refused at once because the shard was not connected to Redis")
    package let publishesOverLimit = Counter("switchboard_cluster_publishes_over_limit_total", help: "Publishes refused because cluster_max_pending_publishes awaited Redis's answer")
    package let backlogsDrained = Counter("switchboard_cluster_backlogs_drained_total", help: "Times the shard's Redis backlog fell to half of cluster_max_pending_publishes after something was refused for it: the protocols send again what they kept (handleClusterBacklogDrained)")
    package let publishErrors = Counter("switchboard_cluster_publish_errors_total", help: "Publishes Redis answered with an error")
    package let publishesUnconfirmed = Counter("switchboard_cluster_publishes_unconfirmed_total", help: "Publishes in flight when the Redis connection was lost (delivered or not: unknown)")
    package let deliveries = Counter("switchboard_cluster_deliveries_total", help: "Channel messages received from Redis for local subscribers")
    package let connected = Counter("switchboard_cluster_redis_connected", help: "This shard's Redis connections that are up: 1 with one Redis, one per master of a Redis Cluster")
    package let connects = Counter("switchboard_cluster_redis_connects_total", help: "Redis connections established (reconnects included)")
    package let disconnects = Counter("switchboard_cluster_redis_disconnects_total", help: "Redis connect failures and lost connections")
    package let protocolErrors = Counter("switchboard_cluster_redis_protocol_errors_total", help: "Redis replies that broke the protocol or a limit (the connection is dropped)")
    package let addressedSent = Counter("switchboard_cluster_addressed_sent_total", help: "Addressed messages (send or close to a socket of another node) this shard sent to that node's inbox")
    package let addressedUndelivered = Counter("switchboard_cluster_addressed_undelivered_total", help: "Addressed messages no node received (the target node was not subscribed to its inbox)")
    package let addressedReceived = Counter("switchboard_cluster_addressed_received_total", help: "Addressed messages this node's inbox received")
    package let subscribedChannels = Counter("switchboard_cluster_subscribed_channels", help: "Channels this shard is subscribed to in Redis (channels with local subscribers)")
    package let members = Counter("switchboard_cluster_members", help: "Live nodes in the last membership answer, this one included (the announcing shard only)")
    package let nodeDeaths = Counter("switchboard_cluster_node_deaths_total", help: "Other nodes seen dead (heartbeat expired, or restarted) by this node")
    package let declaredDead = Counter("switchboard_cluster_declared_dead_total", help: "Times the other nodes declared this node dead while it lived (paused or cut off longer than cluster_node_ttl_ms)")
    package let redirects = Counter("switchboard_cluster_redirects_total", help: "Redis Cluster mode: publishes, commands and reads answered MOVED or ASK and sent again to the named master")
    package let redirectsExhausted = Counter("switchboard_cluster_redirects_exhausted_total", help: "Redis Cluster mode: publishes dropped after too many redirections (or to a master not in the slot map)")
    package let slotMapRefreshes = Counter("switchboard_cluster_slot_map_refreshes_total", help: "Redis Cluster mode: slot maps read (CLUSTER SLOTS) at start, after MOVED and after a lost master")
    package let gapsRecovered = Counter("switchboard_cluster_channel_gaps_recovered_total", help: "Gaps in a channel's stream (after a reconnect, or missing offsets) whose messages were read back from Redis's history and delivered in order")
    package let gapsUnrecovered = Counter("switchboard_cluster_channel_gaps_unrecovered_total", help: "Gaps in a channel's stream that could not be recovered (epoch changed, history trimmed, over cluster_recovery_max_messages, Redis unreachable): the handler heard recovered: false")
    package let recoveriesOverLimit = Counter("switchboard_cluster_recoveries_over_limit_total", help: "Recoveries given up because more than cluster_recovery_max_messages were missed (or buffered while the read was in flight)")
    package let messagesRecovered = Counter("switchboard_cluster_messages_recovered_total", help: "Channel messages delivered from Redis's history by recovery")
    package let remoteCalls = Counter("switchboard_cluster_remote_calls_total", help: "subscribe, unsubscribe and subscriptions(of:) calls this shard sent to a socket's node")
    package let remoteCallTimeouts = Counter("switchboard_cluster_remote_call_timeouts_total", help: "Remote socket calls that got no answer within cluster_remote_call_timeout_ms")
    package let remoteCallsNodeDown = Counter("switchboard_cluster_remote_calls_node_down_total", help: "Remote socket calls refused because no node took the request (the target node is down)")

    package init() {}

    package var all: [Counter] {
        [authFailures, publishes, publishesUnavailable, publishesOverLimit, backlogsDrained, publishErrors, publishesUnconfirmed, deliveries,
         connected, connects, disconnects, protocolErrors, addressedSent, addressedUndelivered, addressedReceived, subscribedChannels,
         members, nodeDeaths, declaredDead, redirects, redirectsExhausted, slotMapRefreshes,
         gapsRecovered, gapsUnrecovered, recoveriesOverLimit, messagesRecovered, remoteCalls, remoteCallTimeouts, remoteCallsNodeDown]
    }
}
