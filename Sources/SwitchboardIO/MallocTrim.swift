import CLiburing

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
