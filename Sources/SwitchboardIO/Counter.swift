import Atomics

/// A counter written by one thread (its shard) and read by any.
///
/// The owner does a relaxed load and a relaxed store, which on x86-64 is two plain moves, not a
/// locked read-modify-write: counting stays off the data path's critical cost.
package final class Counter: Sendable {
    private let storage = ManagedAtomic<Int>(0)
    package let name: String
    package let help: String

    package init(_ name: String, help: String) {
        self.name = name
        self.help = help
    }

    /// Owner thread only.
    @inline(__always) package func increment(by amount: Int = 1) {
        storage.store(storage.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// Owner thread only.
    @inline(__always) package func set(_ value: Int) {
        storage.store(value, ordering: .relaxed)
    }

    /// Any thread.
    package var value: Int { storage.load(ordering: .relaxed) }
}
