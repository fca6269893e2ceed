import CLiburing
import Synchronization

/// How much freed heap glibc's malloc keeps before it hands memory back to the kernel
/// (`IOConfiguration.mallocTrimThresholdBytes`), set once per process when a shard group starts.
///
/// Why (issue 16, measured in `Benchmarks/RESULTS.md`, 2026-12-02 12:00): a message's frame is
/// one allocation (`OutboundBytes`), freed once it is sent. With glibc's default thresholds
/// (trim at 128 KiB of free memory at the top of an arena), 100 connections echoing 16,000-byte
/// messages on io_uring freed enough at the top of the shard's arena that glibc gave it back
/// (`madvise(MADV_DONTNEED)`) nearly every turn, and the next turn's frames faulted it back in
/// page by page, cleared: 1.5 µs of page faults per echo in the kernel's profile, 67k echoes/s
/// against epoll's 118k (whose reply cork makes no frame). With the threshold at 64 MiB the
/// same run did 109–113k. glibc raises its thresholds by itself only after freeing an `mmap`ed
/// chunk (128 KiB or more), which frames of a few KiB never are.
///
/// The setting is process-wide (glibc has no per-arena threshold): the last group to start
/// wins, and 0 leaves malloc as it is (for an application that tunes its allocator itself, or
/// runs one that ignores `mallopt`, such as jemalloc). Setting the trim threshold turns off
/// glibc's dynamic adjustment of the `mmap` threshold, so that is set too, to where the dynamic
/// adjustment ends (half the trim threshold, at most 32 MiB): a large message's frame still
/// comes from the arena rather than an `mmap` and `munmap` of its own per message.
package enum MallocTrim {
    /// glibc's ceiling for the dynamic `mmap` threshold on 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`).
    package static let maxMmapThresholdBytes = 32 << 20

    /// Applies `trimThresholdBytes` (0: nothing is changed). Returns whether glibc took both
    /// settings (false when the allocator is not glibc's, whose `mallopt` answers 0).
    @discardableResult
    package static func apply(trimThresholdBytes: Int) -> Bool {
        assert(trimThresholdBytes >= 0 && trimThresholdBytes <= Int(Int32.max), "validated by IOConfiguration")
        guard trimThresholdBytes > 0 else { return true }
        assert(trimThresholdBytes >= 1 << 20, "validated by IOConfiguration: an mmap threshold of 0 would map every allocation")
        // glibc refuses an mmap threshold over its maximum, which the min keeps clear of.
        let mmapThresholdBytes = min(trimThresholdBytes / 2, maxMmapThresholdBytes)
        return sb_malloc_set_thresholds(Int32(trimThresholdBytes), Int32(mmapThresholdBytes)) == 1
    }

    /// glibc's malloc over all its arenas, now (`mallinfo2`): the bytes in use (arena chunks
    /// and `mmap`ed chunks), and the free bytes it holds in its arenas rather than giving them
    /// back to the kernel: what the trim threshold lets it keep (up to the threshold at the
    /// top of each arena), and what lies in holes no threshold trims.
    ///
    /// Any thread, but not on a hot path: `mallinfo2` locks each arena in turn and walks its
    /// free lists, so a shard that mallocs meanwhile waits for its arena's walk (microseconds
    /// for thousands of free chunks). Read when metrics are rendered or exported, not per turn.
    /// Zero under an allocator that is not glibc's and does not keep these statistics.
    package static func statistics() -> (inUseBytes: Int, freeBytes: Int) {
        var inUse = 0
        var free = 0
        sb_malloc_statistics(&inUse, &free)
        return (inUse, free)
    }
}

/// ``MallocTrim/statistics()`` at most once per interval, for metrics served on a shard thread.
///
/// Why: `GET /metrics` is answered on whichever shard took the connection, and `mallinfo2`
/// locks every arena in turn and walks its free lists. A client asking for `/metrics` in a
/// loop would otherwise make every other shard's `malloc` wait behind those walks; with the
/// cache it costs one walk per interval however often it asks
/// (`BrokerConfiguration.mallocStatisticsIntervalMilliseconds`, 1 s by default, as long as a
/// Prometheus scrape interval is short).
///
/// Any thread. The mutex is held across the walk, so concurrent readers of a stale value wait
/// for the one walk rather than each doing their own; it is never taken on a message's path.
package final class MallocStatisticsCache: Sendable {
    private struct Reading {
        var takenAtNanoseconds: UInt64
        var inUseBytes: Int
        var freeBytes: Int
    }

    /// 0: every read walks the arenas.
    package let intervalNanoseconds: UInt64
    private let last = Mutex<Reading?>(nil)
    /// Walks done (reads answered from the cache do not count), for tests.
    private let walks = Atomic<Int>(0)

    package init(intervalMilliseconds: Int) {
        precondition(intervalMilliseconds >= 0, "validated by BrokerConfiguration")
        intervalNanoseconds = UInt64(intervalMilliseconds) * 1_000_000
    }

    /// How many times `mallinfo2` ran for this cache.
    package var walkCount: Int { walks.load(ordering: .relaxed) }

    /// The statistics read at most `intervalNanoseconds` before `nowNanoseconds` (monotonic).
    package func statistics(nowNanoseconds: UInt64) -> (inUseBytes: Int, freeBytes: Int) {
        last.withLock { reading in
            if let r = reading, nowNanoseconds &- r.takenAtNanoseconds < intervalNanoseconds, intervalNanoseconds > 0 {
                // A clock that went backwards (it cannot: monotonic) would give a huge difference
                // and so a fresh walk, never a value kept forever.
                return (r.inUseBytes, r.freeBytes)
            }
            let fresh = MallocTrim.statistics()
            // Relaxed: a count for tests, ordered with the reading by the mutex anyway.
            walks.add(1, ordering: .relaxed)
            reading = Reading(takenAtNanoseconds: nowNanoseconds, inUseBytes: fresh.inUseBytes, freeBytes: fresh.freeBytes)
            return fresh
        }
    }
}
