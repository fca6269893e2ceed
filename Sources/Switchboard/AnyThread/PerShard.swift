/// One value per shard, each read and written only on its own shard's thread.
///
/// How a protocol reaches its own handler instance on another shard without downcasts: the
/// factory stores the handler (`perShard[context] = handler`), and code sent with
/// ``Broker/execute(onShard:_:)`` reads it back with the context it runs with
/// (`perShard[context]`). `Sendable` because every element is confined to one thread (debug
/// builds assert it); the storage never moves or grows, so shards never touch each other's
/// elements' memory.
public final class PerShard<Value>: @unchecked Sendable {
    /// SocketID gives the shard 8 bits: at most 256 shards.
    public static var capacity: Int { 256 }
    private let storage: UnsafeMutablePointer<Value?>

    public init() {
        storage = .allocate(capacity: Self.capacity)
        storage.initialize(repeating: nil, count: Self.capacity)
    }

    deinit {
        storage.deinitialize(count: Self.capacity)
        storage.deallocate()
    }

    /// This shard's value (nil until set). Only on the context's own shard thread.
    public subscript(context: ShardContext) -> Value? {
        get {
            context.assertOnShard()
            return storage[context.shardIndex]
        }
        set {
            context.assertOnShard()
            storage[context.shardIndex] = newValue
        }
    }
}
