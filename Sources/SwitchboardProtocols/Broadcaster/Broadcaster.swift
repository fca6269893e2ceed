import Switchboard
import SwitchboardJWT

/// The broadcaster protocol (wire-compatible with goevery/broadcaster), mounted by path: one
/// `Broadcaster` per broker, one `BroadcasterShardHandler` per shard.
///
/// ```swift
/// let broadcaster = Broadcaster(options: options)
/// let broker = Broker(configuration: config) { context in broadcaster.makeHandler(context) }
/// broker.additionalMetrics = { broadcaster.metrics.render() }
/// ```
///
/// Ordering: a channel's owner shard (`ChannelName` hash % shard count) assigns each message
/// its offset, keeps the channel's history, and forwards the message once to every shard's
/// handler (`Broker.execute(onShard:)`, FIFO per producer, so every shard sees a channel's
/// messages in offset order); each shard then encodes one frame per local subscriber (the
/// `seq` differs per subscription).
public final class Broadcaster: Sendable {
    public let options: BroadcasterOptions
    public let metrics = BroadcasterMetrics()
    let handlers = PerShard<BroadcasterShardHandler>()
    /// Clock for tests (Unix nanoseconds); real time by default.
    let now: @Sendable () -> Int64

    public init(options: BroadcasterOptions, now: @escaping @Sendable () -> Int64 = { BroadcasterTimestamp.nowNanoseconds() }) {
        precondition(options.validate() == nil, "invalid BroadcasterOptions: \(options.validate()!)")
        self.options = options
        self.now = now
    }

    /// The handler for one shard (call from the broker's handler factory, or mount it in a
    /// router). Starts that shard's token-expiry sweep.
    public func makeHandler(_ context: ShardContext) -> WorkerHandler {
        let handler = BroadcasterShardHandler(shared: self, context: context)
        handlers[context] = handler
        if options.enforceTokenExpiry { scheduleExpirySweep(shard: context.shardIndex, broker: context.broker) }
        return handler
    }

    /// Every `expiryCheckIntervalMilliseconds`, runs the sweep on the shard; ends when the
    /// broker stops (execute refused as stopped).
    private func scheduleExpirySweep(shard: Int, broker: Broker) {
        let interval = options.expiryCheckIntervalMilliseconds
        Task { [weak broker] in
            while true {
                try? await Task.sleep(for: .milliseconds(interval))
                guard let broker else { return }
                let result = broker.execute(onShard: shard) { [self] context in handlers[context]?.closeExpiredSessions() }
                if result == .refused(.stopped) || result == .refused(.unknownShard) { return }
            }
        }
    }

    func owner(of channel: String, shardCount: Int) -> Int {
        Int(ChannelName(channel).hash % UInt64(shardCount))
    }
}
