import Synchronization

/// A counter written by one thread (its shard) and read by any.
///
/// The owner does a relaxed load and a relaxed store, which on x86-64 is two plain moves, not a
/// locked read-modify-write: counting stays off the data path's critical cost.
///
/// The count lives in the counter object itself, right after its header (issue 16 item 3):
/// - With a `ManagedAtomic` (a generic class of another module) and a non-inlinable
///   `increment`, each count from another module (the protocol layer counts every message it
///   receives and sends) was a retain and a release of the counter, two calls (one for the
///   default argument) and the atomic's storage reached through its class's accessor.
/// - Then with an `UnsafeAtomic` (a pointer to a word allocated apart), inlined to the two
///   moves, but each count still went counter → pointer → word: at 1,000 connections, where
///   the kernel's work between two messages evicts them, perf put 5–7% of the server's user
///   samples on those loads (`RESULTS.md`, 2026-12-03). Inline, the word shares the line the
///   counter's address already brings.
@usableFromInline package final class Counter: Sendable {
    /// First stored property: at offset 16, in the object's first cache line.
    @usableFromInline let storage: Atomic<Int>
    package let name: String
    package let help: String

    package init(_ name: String, help: String) {
        storage = Atomic(0)
        self.name = name
        self.help = help
    }

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
