import CLiburing
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The SDK's one readiness source: a single epoll thread, shared by every connection of the
/// process, that resumes the task waiting for a socket to become readable or writable.
///
/// Why a thread at all: a Swift process on Linux without SwiftNIO has no readiness
/// notification that an `async` function can await; the cooperative pool must never block in
/// `poll`, and polling on a timer wastes CPU and adds latency. One thread for the whole SDK
/// (not one per connection, not one per attempt) blocks in `epoll_wait` and does nothing but
/// resume continuations; all protocol work runs in the connections' tasks. Timeouts are the
/// tasks' own (`Task.sleep` in a task group), never a wake-up of this thread.
///
/// Thread rules: ``wait(_:for:)`` and ``forget(_:)`` may be called from any task; the table of
/// waiters is guarded by one mutex, and continuations are resumed after it is released.
/// Registrations are `EPOLLONESHOT`: an event disarms the descriptor until a task waits again,
/// so a socket nobody waits on costs no wake-ups.
final class ClientReactor: Sendable {
    /// The process-wide reactor, started on first use.
    static let shared = ClientReactor()

    enum Interest: Sendable { case readable, writable }

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct Entry {
        var read: Waiter?
        var write: Waiter?
        /// Whether the descriptor is in the epoll set (ADD once, MOD after).
        var registered = false
    }

    private struct Table {
        var entries: [Int32: Entry] = [:]
        var nextId: UInt64 = 0
    }

    /// Why a wait ended without readiness: the descriptor was forgotten (the connection is
    /// closing) while a task waited on it.
    struct Forgotten: Error {}

    private let epollFD: Int32
    private let table = Mutex(Table())

    private static let oneShot: UInt32 = 1 << 30  // EPOLLONESHOT (not exported by the shim)

    private init() {
        let fd = sb_epoll_create()
        precondition(fd >= 0, "epoll_create1 failed: \(-fd)")
        epollFD = fd
        let thread = Thread { [self] in run() }
        thread.name = "SwitchboardClient.reactor"
        thread.start()
    }

    /// Suspends until `fd` is readable or writable (or has an error or hang-up, which the next
    /// read or write reports). Throws `CancellationError` when the calling task is cancelled,
    /// ``Forgotten`` when `forget(fd)` runs meanwhile. One waiter per descriptor and interest.
    func wait(_ fd: Int32, for interest: Interest) async throws {
        let id = table.withLock { t -> UInt64 in
            t.nextId &+= 1
            return t.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let refused: (any Error)? = table.withLock { t in
                    // Checked under the lock: a cancellation handler that ran before this
                    // point found nothing to cancel, and the flag it follows is already set.
                    if Task.isCancelled { return CancellationError() }
                    var entry = t.entries[fd] ?? Entry()
                    let waiter = Waiter(id: id, continuation: continuation)
                    switch interest {
                    case .readable:
                        precondition(entry.read == nil, "two tasks wait for fd \(fd) to be readable")
                        entry.read = waiter
                    case .writable:
                        precondition(entry.write == nil, "two tasks wait for fd \(fd) to be writable")
                        entry.write = waiter
                    }
                    if let error = arm(fd, &entry) { return error }
                    t.entries[fd] = entry
                    return nil
                }
                if let refused { continuation.resume(throwing: refused) }
            }
        } onCancel: {
            let cancelled = table.withLock { t -> Waiter? in
                guard var entry = t.entries[fd] else { return nil }
                var taken: Waiter?
                if interest == .readable, entry.read?.id == id { taken = entry.read; entry.read = nil }
                if interest == .writable, entry.write?.id == id { taken = entry.write; entry.write = nil }
                t.entries[fd] = entry
                return taken
            }
            cancelled?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Removes `fd` from the epoll set and fails its waiters with ``Forgotten``. Call before
    /// closing the descriptor (a closed number may be reused by the next socket).
    func forget(_ fd: Int32) {
        let entry = table.withLock { t -> Entry? in
            guard let entry = t.entries.removeValue(forKey: fd) else { return nil }
            if entry.registered { _ = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_DEL, fd, 0, 0) }
            return entry
        }
        entry?.read?.continuation.resume(throwing: Forgotten())
        entry?.write?.continuation.resume(throwing: Forgotten())
    }

    /// (Re)arms `fd` for what its waiters want. Called with the table locked.
    private func arm(_ fd: Int32, _ entry: inout Entry) -> (any Error)? {
        var events = Self.oneShot | SB_EPOLLRDHUP
        if entry.read != nil { events |= SB_EPOLLIN }
        if entry.write != nil { events |= SB_EPOLLOUT }
        let data = UInt64(UInt32(bitPattern: fd))
        var rc = sb_epoll_ctl(epollFD, entry.registered ? SB_EPOLL_CTL_MOD : SB_EPOLL_CTL_ADD, fd, events, data)
        // A descriptor closed without forget() left the set; its number may be a new socket.
        if rc == -ENOENT { rc = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_ADD, fd, events, data) }
        guard rc == 0 else { return BrokerClientError.connectionFailed("epoll_ctl: \(errnoText(-rc))") }
        entry.registered = true
        return nil
    }

    private func run() {
        var data = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        var ready: [CheckedContinuation<Void, any Error>] = []
        while true {
            let count = sb_epoll_wait(epollFD, &data, &events, Int32(data.count), -1)
            if count < 0 { continue }  // EINTR is retried by the shim; nothing else is expected
            table.withLock { t in
                for index in 0..<Int(count) {
                    let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data[index]))
                    guard var entry = t.entries[fd] else { continue }
                    let flags = events[index]
                    let failed = flags & (SB_EPOLLERR | SB_EPOLLHUP) != 0
                    if failed || flags & (SB_EPOLLIN | SB_EPOLLRDHUP) != 0, let waiter = entry.read {
                        ready.append(waiter.continuation)
                        entry.read = nil
                    }
                    if failed || flags & SB_EPOLLOUT != 0, let waiter = entry.write {
                        ready.append(waiter.continuation)
                        entry.write = nil
                    }
                    // One-shot disarmed the descriptor: re-arm for a waiter still waiting.
                    if entry.read != nil || entry.write != nil { _ = arm(fd, &entry) }
                    t.entries[fd] = entry
                }
            }
            for continuation in ready { continuation.resume() }
            ready.removeAll(keepingCapacity: true)
        }
    }
}
