import Atomics

/// A counter written by one thread (its shard) and read by any.
///
/// The owner does a relaxed load and a relaxed store, which on x86-64 is two plain moves, not a
/// locked read-modify-write: counting stays off the data path's critical cost.
public final class Counter: @unchecked Sendable {
    private let storage = ManagedAtomic<Int>(0)
    public let name: String
    public let help: String

    public init(_ name: String, help: String) {
        self.name = name
        self.help = help
    }

    /// Owner thread only.
    @inline(__always) public func increment(by amount: Int = 1) {
        storage.store(storage.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// Owner thread only.
    @inline(__always) public func set(_ value: Int) {
        storage.store(value, ordering: .relaxed)
    }

    /// Any thread.
    public var value: Int { storage.load(ordering: .relaxed) }
}
