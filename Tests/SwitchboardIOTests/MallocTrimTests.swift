@testable import SwitchboardIO
import CLiburing
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `malloc_trim_threshold_bytes` (`MallocTrim`): frames freed after their send stay in the
/// arena for the next turn instead of going back to the kernel and being faulted in again.
/// Serialized: the thresholds are process-wide, and each test ends with the default set again
/// (what every shard group sets when it starts).
@Suite("malloc trim threshold", .serialized)
struct MallocTrimTests {
    @Test("validation: 0 (leave malloc alone) or 1 MiB ... 1 GiB; the default is 64 MiB")
    func validation() {
        var c = IOConfiguration()
        #expect(c.mallocTrimThresholdBytes == 64 << 20)
        #expect(c.validate() == nil)
        for bad in [-1, 1, (1 << 20) - 1, (1 << 30) + 1] {
            c.mallocTrimThresholdBytes = bad
            #expect(c.validate() != nil, "\(bad) accepted")
        }
        for good in [0, 1 << 20, 1 << 30] {
            c.mallocTrimThresholdBytes = good
            #expect(c.validate() == nil, "\(good) refused")
        }
    }

    /// A turn's worth of frames (400 × 16 KiB, 6.4 MB) freed and made again, as 100 connections
    /// echoing 16 KiB do: the page faults the second round takes, with the threshold at `bytes`.
    private func refaultsAfterFree(trimThresholdBytes bytes: Int) -> Int {
        #expect(MallocTrim.apply(trimThresholdBytes: bytes))
        return refaultsAfterFree()
    }

    /// The same, at whatever thresholds the process has.
    private func refaultsAfterFree() -> Int {
        let count = 400, size = 16_384
        var blocks = [UnsafeMutableRawPointer](repeating: UnsafeMutableRawPointer(bitPattern: 1)!, count: count)
        func round() {
            for i in 0..<count {
                let p = malloc(size)!
                memset(p, 0x5A, size)  // touched, as a frame's bytes are written
                blocks[i] = p
            }
            for i in 0..<count { free(blocks[i]) }
        }
        round()
        // RUSAGE_THREAD (1; Glibc does not export it without _GNU_SOURCE): this thread's faults.
        let thread = __rusage_who_t(1)
        var before = rusage(), after = rusage()
        getrusage(thread, &before)
        round()
        getrusage(thread, &after)
        return Int(after.ru_minflt - before.ru_minflt)
    }

    @Test("freed frames stay resident at the default threshold, and are faulted in again at a low one")
    func refaults() {
        defer { MallocTrim.apply(trimThresholdBytes: IOConfiguration().mallocTrimThresholdBytes) }
        // 1 MiB: the 6.4 MB freed at the top of the arena goes back to the kernel, and most of
        // its 1,600 pages fault in again (the failure this setting mends).
        let low = refaultsAfterFree(trimThresholdBytes: 1 << 20)
        let kept = refaultsAfterFree(trimThresholdBytes: IOConfiguration().mallocTrimThresholdBytes)
        print("page faults remaking 400 × 16 KiB: \(low) with a 1 MiB trim threshold, \(kept) with 64 MiB")
        #expect(low >= 400, "\(low) faults: the low threshold did not return the memory (the test measures nothing)")
        #expect(kept < 100, "\(kept) faults: freed frames were returned to the kernel at the default threshold")
    }

    @Test("a shard group applies its configuration's threshold when it starts")
    func appliedAtStart() throws {
        defer { MallocTrim.apply(trimThresholdBytes: IOConfiguration().mallocTrimThresholdBytes) }
        #expect(MallocTrim.apply(trimThresholdBytes: IOConfiguration().mallocTrimThresholdBytes))
        var c = IOConfiguration()
        c.backend = .epoll
        c.shardCount = 1
        c.recvBufferCount = 64
        c.mallocTrimThresholdBytes = 1 << 20
        let group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: EventLog()) }
        try group.start()
        defer { group.shutdown(graceMilliseconds: 500) }
        let faults = refaultsAfterFree()
        #expect(faults >= 400, "\(faults) faults: the group's 1 MiB threshold was not applied")
    }

    @Test("0 changes nothing and reports success: the threshold set before stays")
    func zeroLeavesMallocAlone() {
        defer { MallocTrim.apply(trimThresholdBytes: IOConfiguration().mallocTrimThresholdBytes) }
        #expect(MallocTrim.apply(trimThresholdBytes: 1 << 20))
        #expect(MallocTrim.apply(trimThresholdBytes: 0))
        // Still 1 MiB: the freed frames go back to the kernel and fault in again.
        let faults = refaultsAfterFree()
        #expect(faults >= 400, "\(faults) faults: applying 0 changed the threshold")
    }
}
