import CLiburing  // as ClientTransport.swift: this file did not see SOCK_STREAM through Glibc alone on the merged tree
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Turns a URL's host into socket addresses without blocking a thread of Swift's cooperative
/// pool: `getaddrinfo` on a DNS name may wait seconds for a resolver (it has no non-blocking
/// form in glibc that the SDK could await), so the lookup runs on a thread of its own and the
/// calling task awaits a continuation. An IP literal is parsed in place (`AI_NUMERICHOST`
/// never touches the network), so the common `ws://127.0.0.1:...` case starts no thread.
///
/// Thread rules: the lookup thread owns the `addrinfo` list and frees it; it hands back
/// copies (``Address``). Exactly one of the lookup thread and the cancellation handler resumes
/// the continuation (`Lookup.take()`). A cancelled lookup returns at once (the caller's
/// connect timeout cancels it); its thread finishes in the background and its result is
/// dropped, since glibc cannot abandon a lookup in progress.
///
/// Lookup threads are capped process-wide (``lookups``, default
/// ``defaultMaxConcurrentLookups``, `ClientWebSocket.maxConcurrentHostLookups`): a lookup
/// beyond the cap waits for a running one to finish, bounded by the caller's connect timeout.
/// A slot is held by the thread, not by the caller: a cancelled lookup whose thread still runs
/// keeps its slot until `getaddrinfo` returns, so a hanging resolver can never cost more than
/// the cap in threads.
enum HostResolver {
    /// Default cap on concurrent `getaddrinfo` threads.
    static let defaultMaxConcurrentLookups = 4

    /// The process-wide cap on lookup threads.
    static let lookups = ConcurrencyLimit(limit: defaultMaxConcurrentLookups)

    /// One resolved address, copied out of the `addrinfo` list.
    struct Address: Sendable {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t
    }

    /// The addresses of `host` (an IP literal or a DNS name) for TCP `port`, in the order
    /// `getaddrinfo` gave them. Throws ``BrokerClientError/connectionFailed(_:)`` naming the
    /// host when it does not resolve, or `CancellationError` when the task was cancelled first.
    static func resolve(host: String, port: UInt16) async throws -> [Address] {
        if case .success(let numeric) = lookup(host: host, port: port, flags: AI_NUMERICHOST) { return numeric }
        return try await resolveOnThread(limit: lookups) { lookup(host: host, port: port, flags: 0) }
    }

    /// Runs the blocking `lookup` on a thread of its own once `limit` admits it (tests pass a
    /// lookup that blocks until they let it go).
    static func resolveOnThread(limit: ConcurrencyLimit,
                                _ lookup: @escaping @Sendable () -> Result<[Address], BrokerClientError>) async throws -> [Address] {
        try await limit.acquire()
        let pending = Lookup()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Address], any Error>) in
                guard pending.store(continuation) else {
                    limit.release()  // no thread was started: the slot goes back now
                    continuation.resume(throwing: CancellationError())
                    return
                }
                let thread = Thread {
                    let result = lookup()
                    limit.release()  // the thread is done: the slot is free even if nobody waits for the result
                    pending.take()?.resume(with: result.mapError { $0 as any Error })
                }
                thread.name = "switchboard-resolve"
                thread.start()
            }
        } onCancel: {
            pending.cancel()?.resume(throwing: CancellationError())
        }
    }

    /// The continuation of one lookup, resumed exactly once: by the lookup thread or by the
    /// cancellation handler, whichever takes it first.
    private final class Lookup: Sendable {
        private struct State {
            var continuation: CheckedContinuation<[Address], any Error>?
            var cancelled = false
        }
        private let state = Mutex(State())

        /// Stores the continuation; false when the task was cancelled before it got here.
        func store(_ continuation: CheckedContinuation<[Address], any Error>) -> Bool {
            state.withLock { s in
                if s.cancelled { return false }
                s.continuation = continuation
                return true
            }
        }

        func take() -> CheckedContinuation<[Address], any Error>? {
            state.withLock { s in
                defer { s.continuation = nil }
                return s.continuation
            }
        }

        func cancel() -> CheckedContinuation<[Address], any Error>? {
            state.withLock { s in
                s.cancelled = true
                defer { s.continuation = nil }
                return s.continuation
            }
        }
    }

    /// `getaddrinfo` for a TCP stream; blocks for a DNS name unless `flags` has AI_NUMERICHOST.
    static func lookup(host: String, port: UInt16, flags: Int32) -> Result<[Address], BrokerClientError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | flags
        var list: UnsafeMutablePointer<addrinfo>?
        let gai = getaddrinfo(host, String(port), &hints, &list)
        guard gai == 0, let first = list else {
            return .failure(.connectionFailed("cannot resolve \(host): \(String(cString: gai_strerror(gai)))"))
        }
        defer { freeaddrinfo(list) }
        var addresses: [Address] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            cursor = entry.pointee.ai_next
            let length = Int(entry.pointee.ai_addrlen)
            guard let source = entry.pointee.ai_addr, length <= MemoryLayout<sockaddr_storage>.size else { continue }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { $0.baseAddress!.copyMemory(from: source, byteCount: length) }
            addresses.append(Address(family: entry.pointee.ai_family, storage: storage, length: entry.pointee.ai_addrlen))
        }
        guard !addresses.isEmpty else { return .failure(.connectionFailed("no addresses for \(host)")) }
        return .success(addresses)
    }
}

extension ClientWebSocket {
    /// Process-wide cap on concurrent DNS lookups (each runs `getaddrinfo` on a thread of its
    /// own; IP literals need none). Default 4. A connect beyond it waits for a lookup to finish,
    /// within its connect timeout (then `.timeout`). Must be positive.
    public static var maxConcurrentHostLookups: Int {
        get { HostResolver.lookups.limit }
        set { HostResolver.lookups.limit = newValue }
    }

    /// How many DNS lookups had to wait for a slot under ``maxConcurrentHostLookups`` (the
    /// limit's metric: nonzero means connects queued behind slow or many lookups).
    public static var hostLookupsQueued: Int { HostResolver.lookups.waitedCount }
}
