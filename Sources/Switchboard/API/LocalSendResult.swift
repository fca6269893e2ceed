/// The exact result of `ShardContext.send`.
public enum LocalSendResult: Sendable, Equatable {
    /// The frame is in the socket's send queue.
    case queued
    /// The socket's queue is at its limit: the slow-consumer policy dropped the message (or
    /// started closing the socket, under the `close` policy). Counted.
    case dropped
    /// The id is stale, not a WebSocket, or the socket is closing.
    case closed
    /// The socket belongs to another shard: use ``Broker/send(_:_:)``.
    case notLocal
}
