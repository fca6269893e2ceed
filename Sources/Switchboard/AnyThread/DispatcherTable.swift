/// Each shard's dispatcher, typed: how the any-thread ``Broker`` reaches a shard's protocol
/// layer without a downcast (shards know their handler only as a `ShardEventHandler`).
///
/// Element `i` is written once, on shard `i`'s thread, before the shard reports ready (so
/// before `Broker.start()` returns), and read only on shard `i`'s thread afterwards (inside
/// work posted to that shard, or on it already). The storage never moves.
final class DispatcherTable: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<ShardDispatcher?>
    let count: Int

    init(count: Int) {
        self.count = count
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil, count: count)
    }

    deinit {
        storage.deinitialize(count: count)
        storage.deallocate()
    }

    /// Shard `index`'s own thread only.
    subscript(index: Int) -> ShardDispatcher {
        get {
            let dispatcher = storage[index]
            assert(dispatcher != nil, "shard \(index) has no dispatcher yet")
            assert(dispatcher!.context.isOnShard, "dispatcher \(index) read off its shard")
            return dispatcher.unsafelyUnwrapped
        }
    }

    func set(_ index: Int, _ dispatcher: ShardDispatcher) {
        assert(storage[index] == nil, "shard \(index) made twice")
        storage[index] = dispatcher
    }
}
