import Atomics

/// A counter written by one thread (its shard) and read by any.
///
/// The owner does a relaxed load and a relaxed store, which on x86-64 is two plain moves, not a
/// locked read-modify-write: counting stays off the data path's critical cost.
///
/// The count lives in a word of its own behind an `UnsafeAtomic` (issue 16 item 3): with a
/// `ManagedAtomic` (a generic class of another module) and a non-inlinable `increment`, each
/// count from another module (the protocol layer counts every message it receives and sends)
/// was a retain and a release of the counter, two calls (one for the default argument) and
/// the atomic's storage reached through its class's accessor. Inlined, it is the two moves.
@usableFromInline package final class Counter: Sendable {
    /// Allocated in `init`, freed in `deinit`: it lives exactly as long as the counter.
    @usableFromInline let storage: UnsafeAtomic<Int>
    package let name: String
    package let help: String

    package init(_ name: String, help: String) {
        storage = .create(0)
        self.name = name
        self.help = help
    }

    deinit { _ = storage.destroy() }

    /// Owner thread only. (An overload, not a default argument of `increment(by:)`: a default
    /// argument is a call of its own across modules.)
    @inlinable @inline(__always) package func increment() { increment(by: 1) }

    /// Owner thread only.
    @inlinable @inline(__always) package func increment(by amount: Int) {
        storage.store(storage.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// Owner thread only.
    @inlinable @inline(__always) package func set(_ value: Int) {
        storage.store(value, ordering: .relaxed)
    }

    /// Any thread.
    package var value: Int { storage.load(ordering: .relaxed) }
}
