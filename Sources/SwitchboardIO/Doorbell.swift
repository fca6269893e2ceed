import Atomics
import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Wakes a shard that is about to sleep, and only then: a producer that finds the shard awake
/// pays one load, not a syscall.
///
/// Protocol: the consumer calls `prepareToSleep()`, re-checks its queues, then blocks (or calls
/// `cancelSleep()` if it found work). A producer publishes its item, then calls `ring()`.
/// Both sides use sequentially consistent operations, so either the consumer sees the item in
/// its re-check or the producer sees the sleeping flag.
///
/// `@unchecked Sendable`: `eventFD` is written only by `closeDescriptor()`, after the consumer's
/// thread has been joined; until then producers only read it (through `ring()`).
package final class Doorbell: @unchecked Sendable {
    /// An eventfd: non-blocking, written to wake the shard.
    package private(set) var eventFD: Int32
    private let sleeping = ManagedAtomic<Bool>(false)

    package init() throws(IOError) {
        let fd = sb_eventfd()
        if fd < 0 { throw IOError.system("eventfd", -fd) }
        eventFD = fd
    }

    deinit { closeDescriptor() }

    /// Closes the eventfd once the consumer has exited; further rings are no-ops.
    func closeDescriptor() {
        if eventFD >= 0 { close(eventFD); eventFD = -1 }
    }

    package func prepareToSleep() { sleeping.store(true, ordering: .sequentiallyConsistent) }
    package func cancelSleep() { sleeping.store(false, ordering: .sequentiallyConsistent) }

    /// Any thread, after publishing work.
    @inline(__always) package func ring() {
        // The producer's publishing store (often a release store into a ring) must not be
        // reordered after this load, or producer and consumer could each miss the other's
        // write (x86 reorders a store before a later load): a full fence, matching the
        // consumer's sequentially consistent store in prepareToSleep.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard sleeping.load(ordering: .sequentiallyConsistent) else { return }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) && eventFD >= 0 {
            // Counted by the consumer when the eventfd's event arrives
            // (`switchboard_doorbell_wakeups_total`): one writer, no shared counter here.
            _ = sb_eventfd_signal(eventFD)
        }
    }

    /// Consumer, after waking: clears the eventfd counter.
    package func drain() { _ = sb_eventfd_drain(eventFD) }
}

/// An error from the I/O layer, with the failing call and errno.
public enum IOError: Error, CustomStringConvertible, Sendable, Equatable {
    case system(String, Int32)
    case unavailable(String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .system(let call, let errno): return "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .unavailable(let why): return why
        case .invalidConfiguration(let why): return "invalid configuration: \(why)"
        }
    }
}
