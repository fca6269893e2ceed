import Logging
import SwitchboardCluster
import SwitchboardIO
import Synchronization

/// The Redis endpoint of a broker's cluster engine: resolved once by `Broker.start()` (name
/// resolution blocks, so never on a shard), read by each shard as it starts.
final class ClusterEndpoint: Sendable {
    private let resolved = Mutex<(options: OutboundOptions, database: Int)?>(nil)

    func set(_ value: (options: OutboundOptions, database: Int)) { resolved.withLock { $0 = value } }
    var value: (options: OutboundOptions, database: Int)? { resolved.withLock { $0 } }
}

extension Broker {
    /// `cluster_engine = redis`: resolves the Redis address before any shard starts.
    func resolveCluster() throws {
        guard configuration.cluster.engine == .redis else { return }
        switch configuration.cluster.resolvedOutboundOptions() {
        case .success(let endpoint):
            clusterEndpoint.set(endpoint)
            logger.notice("cluster: node \(configuration.cluster.nodeID), Redis engine at \(endpoint.options.host):\(endpoint.options.port)")
        case .failure(let error):
            throw ConfigurationError(line: 0, message: error.description)
        }
    }

    /// On the shard's thread, as its dispatcher is made: gives it its own Redis engine.
    static func attachCluster(_ configuration: BrokerConfiguration, _ endpoint: ClusterEndpoint, _ metrics: ClusterMetrics,
                              _ dispatcher: ShardDispatcher, logger: Logger) {
        guard configuration.cluster.engine == .redis else { return }
        guard let (options, database) = endpoint.value else {
            return assertionFailure("the cluster endpoint is resolved before the shards start")
        }
        let engine = RedisShardEngine(configuration: configuration.cluster, options: options, database: database,
                                      shardIndex: dispatcher.context.shardIndex, metrics: metrics,
                                      logger: logger.forShard(dispatcher.context.shardIndex))
        dispatcher.channels.attachCluster(engine)
    }
}
