/// Where a channel message stands: the channel's incarnation (`epoch`) and the message's
/// number within it (`offset`, from 1).
///
/// A channel's owner shard remembers a channel only while it is in use: from a publish until
/// `channel_offset_retention_ms` without one (or until `max_channels_per_shard` makes room
/// for a newer channel). The next publish after that starts a new incarnation, with a new
/// epoch and offsets from 1 again. So, comparing two positions of one channel:
/// - same epoch: offsets are consecutive; a gap means messages this shard did not see;
/// - different epoch: the channel's counting restarted (nothing can be said about a gap).
///
/// Epochs are `base + n`: `base` is drawn at random by each owner shard when it starts and `n`
/// counts the incarnations it created, so two incarnations never share an epoch within a run,
/// and across restarts only with negligible probability (2^-64 per pair). Epochs carry no order.
public struct ChannelPosition: Sendable, Hashable, CustomStringConvertible {
    public let epoch: UInt64
    public let offset: UInt64

    public init(epoch: UInt64, offset: UInt64) {
        self.epoch = epoch
        self.offset = offset
    }

    public var description: String { "\(epoch):\(offset)" }
}
