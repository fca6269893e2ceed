import Switchboard
import SwitchboardCluster
import SwitchboardRESP

/// What the RPC core needs from the shard it runs on. `ShardContext` provides it in
/// production (RPCServer.swift); unit tests provide an in-memory one. Called only on the
/// shard's thread.
protocol RPCShardIO: AnyObject {
    /// Traps in debug builds when called off the shard's thread (the core's entry points
    /// check it: the core is confined to its shard, with no lock).
    func assertOnShard(file: StaticString, line: UInt)
    var shardIndex: Int { get }
    var shardCount: Int { get }
    /// Queues a text frame to a socket of this shard.
    func sendText(_ socket: SocketID, _ text: String) -> RPCSendOutcome
    /// Starts the close handshake.
    func closeSocket(_ socket: SocketID, code: UInt16, reason: String)
    // Cluster (RPCCluster.swift); the defaults below are a single node's.
    /// This node's number with `cluster_engine = redis`, else nil.
    var clusterNode: Int? { get }
    /// This process's incarnation of its node: the tag of the directory entries it writes.
    var clusterIncarnation: UInt64 { get }
    var clusterKeyPrefix: String { get }
    /// `cluster_cleanup_batch_entries`: a clean-up step's `HSCAN COUNT`.
    var clusterCleanUpBatchEntries: Int { get }
    /// One Redis command; `completion` exactly once on this shard (nil: Redis unreachable).
    func clusterCommand(_ arguments: [[UInt8]], _ completion: @escaping (RESPValue?) -> Void)
    /// A message to another node's RPC core; false when refused at once.
    func sendToClusterNode(_ node: Int, _ message: [UInt8]) -> Bool
    /// The same, learning whether a node took it: `receivers` runs later on this shard with
    /// the number of processes subscribed to that node's inbox (0: node `node` is not up, the
    /// message is lost), or nil when the Redis connection was lost first (unknown). Never
    /// called when the send is refused at once (false).
    func sendToClusterNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> Bool
}

extension RPCShardIO {
    var clusterNode: Int? { nil }
    var clusterIncarnation: UInt64 { 0 }
    var clusterKeyPrefix: String { "switchboard" }
    var clusterCleanUpBatchEntries: Int { ClusterConfiguration().cleanUpBatchEntries }
    func clusterCommand(_ arguments: [[UInt8]], _ completion: @escaping (RESPValue?) -> Void) { completion(nil) }
    func sendToClusterNode(_ node: Int, _ message: [UInt8]) -> Bool { false }
    func sendToClusterNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> Bool { false }
}

enum RPCSendOutcome: Equatable {
    case queued
    /// The slow-consumer policy dropped it.
    case dropped
    /// Stale, closing, or not a socket of this shard.
    case gone
}

/// The result of posting work to a shard.
enum RPCPosted: Equatable {
    case queued
    case full
    case stopped
}

/// Runs code on a shard with that shard's RPC core: `Broker.execute(onShard:)` + `PerShard`
/// in production. Any thread.
protocol RPCShardExecutor: Sendable {
    var shardCount: Int { get }
    @discardableResult
    func execute(onShard index: Int, _ body: @escaping @Sendable (RPCShardCore) -> Void) -> RPCPosted
}

/// Everything the shards of one RPC service share (immutable or thread-safe).
final class RPCShared: Sendable {
    let options: RPCServerOptions
    let metrics: RPCMetrics
    let decoder: RPCMessageDecoder
    let onNode: @Sendable (RPCNode) -> Void

    init(options: RPCServerOptions, metrics: RPCMetrics, onNode: @escaping @Sendable (RPCNode) -> Void) {
        precondition(options.validate() == nil, options.validate() ?? "")
        self.options = options
        self.metrics = metrics
        decoder = RPCMessageDecoder(limits: options.limits)
        self.onNode = onNode
    }

    /// The shard holding the directory entry of a node id: FNV-1a of its UTF-8 bytes, so the
    /// placement is the same in every process (ready for the cluster engine).
    static func ownerShard(of id: String, shardCount: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return Int(h % UInt64(shardCount))
    }
}

/// Starts the per-shard tick that drives `init` delays, timeouts and pings: one task per shard
/// posting `tick()` every `tickMilliseconds`, ending when the broker stops.
enum RPCTicker {
    static func start(shard: Int, executor: any RPCShardExecutor, tickMilliseconds: Int) {
        Task.detached {
            while true {
                try? await Task.sleep(for: .milliseconds(tickMilliseconds))
                if executor.execute(onShard: shard, { $0.tick() }) == .stopped { return }
            }
        }
    }
}
