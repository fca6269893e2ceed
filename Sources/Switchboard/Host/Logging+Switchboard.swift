import Logging
import SwitchboardIO

/// Metadata keys Switchboard attaches to its log records, so a host's log backend can filter
/// and index them.
public enum SwitchboardLogKey {
    /// The shard index (decimal).
    public static let shard = "shard"
    /// A WebSocket's `SocketID` (its description).
    public static let socket = "socket"
}

extension Logger {
    /// This logger with the `shard` metadata key set.
    public func forShard(_ index: Int) -> Logger {
        var copy = self
        copy[metadataKey: SwitchboardLogKey.shard] = "\(index)"
        return copy
    }

    /// This logger with the `shard` and `socket` metadata keys set for one socket.
    public func forSocket(_ socketId: SocketID) -> Logger {
        var copy = forShard(socketId.shard)
        copy[metadataKey: SwitchboardLogKey.socket] = "\(socketId)"
        return copy
    }
}

extension ShardContext {
    /// The broker's logger with this shard's index as metadata, for handlers.
    public var logger: Logger { broker.logger.forShard(shardIndex) }
}

extension Logger {
    /// A logger that drops every record (tests; hosts that want the broker silent).
    public static let discarding = Logger(label: "switchboard", factory: { _ in SwiftLogNoOpLogHandler() })
}
