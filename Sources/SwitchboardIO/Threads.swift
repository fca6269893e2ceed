import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// A started POSIX thread that can be joined.
///
/// Raw pthreads rather than Foundation keep Foundation out of the server's core; the body is
/// passed through an Unmanaged box because a capturing closure cannot be a C function pointer.
package struct OSThread: Sendable {
    private let handle: pthread_t

    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// Starts a thread running `body`. Fails only when the system is out of threads.
    package static func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> OSThread? {
        let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            _ = box.name.withCString { sb_set_thread_name($0) }
            box.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            return nil
        }
        return OSThread(handle: tid)
    }

    package func join() {
        _ = pthread_join(handle, nil)
    }
}

/// Monotonic time in milliseconds.
@inline(__always) package func monotonicMilliseconds() -> Int64 { sb_monotonic_ns() / 1_000_000 }

/// Wall-clock Unix time in seconds (for the HTTP Date header).
@inline(__always) package func unixSeconds() -> Int { Int(time(nil)) }
