@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `malloc_trim_threshold_bytes` (`MallocTrim`): frames freed after their send stay in the
/// arena for the next turn instead of going back to the kernel and being faulted in again.
///
/// Measured by `switchboard-malloc-probe` (`Tests/switchboard-malloc-probe`), a process of its
/// own: where freed memory goes depends on the arena's history, and in this process, after
/// hundreds of tests, it is anyone's guess. CI showed both ways an in-process measure fails:
/// frames that spilled into a new 64 MiB heap, which glibc unmaps once wholly free whatever the
/// threshold (1,009 of 1,600 pages refaulted at either threshold), and frames taken from a hole
/// in the middle of the heap, which no threshold trims (0 of 1,199 pages given back at 1 MiB).
@Suite("malloc trim threshold")
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

    /// What the probe printed for `arguments`: of the whole pages inside the freed frames (800
    /// × 16 KiB), those no longer resident, at the top of the arena (where a threshold trims)
    /// and in all (the first frames may fill holes below the top, which nothing trims).
    struct Freed: CustomStringConvertible {
        var top: (givenBack: Int, pages: Int)
        var all: (givenBack: Int, pages: Int)
        var description: String { "\(top.givenBack) of \(top.pages) pages at the top, \(all.givenBack) of \(all.pages) in all" }
        /// All but glibc's top pad (128 KiB, 32 pages) of the top went back to the kernel.
        var trimmed: Bool { top.pages >= 1_000 && top.givenBack >= top.pages - 64 }
        /// Nothing went back.
        var kept: Bool { all.givenBack == 0 }
    }

    private func probe(_ arguments: [String]) throws -> Freed {
        let path = try #require(switchboardExecutable(named: "switchboard-malloc-probe"),
                                "switchboard-malloc-probe not built next to the test binary: run `swift build --build-tests`")
        let result = try runTool(path, arguments)
        try #require(result.status == 0, "probe \(arguments) exited \(result.status): \(result.output)")
        let words = result.output.split(whereSeparator: { $0 == " " || $0 == "\n" })
        try #require(words.count == 8 && words[0] == "top" && words[4] == "all", "probe printed \(result.output)")
        let n = words.map { Int($0) ?? -1 }
        let freed = Freed(top: (n[1], n[3]), all: (n[5], n[7]))
        try #require(freed.all.pages >= 2_000, "probe measured too little: \(freed)")
        return freed
    }

    @Test("freed frames stay resident at the default threshold, and go back to the kernel at a low one")
    func givenBack() throws {
        // 1 MiB: the frames freed at the top of the arena go back to the kernel, and the next
        // turn faults them in again (the failure this setting mends).
        let low = try probe(["apply", "\(1 << 20)"])
        let kept = try probe(["apply", "\(IOConfiguration().mallocTrimThresholdBytes)"])
        print("freed 800 × 16 KiB: at a 1 MiB trim threshold \(low); at 64 MiB \(kept)")
        #expect(low.trimmed, "\(low): the low threshold did not return the memory (the test measures nothing)")
        #expect(kept.kept, "\(kept): freed frames were returned to the kernel at the default threshold")
    }

    @Test("a shard group applies its configuration's threshold when it starts")
    func appliedAtStart() throws {
        let low = try probe(["group", "\(1 << 20)"])
        let kept = try probe(["group", "\(IOConfiguration().mallocTrimThresholdBytes)"])
        print("after a group's start and stop: at 1 MiB \(low); at 64 MiB \(kept)")
        #expect(low.trimmed, "\(low): the group's 1 MiB threshold was not applied")
        #expect(kept.kept, "\(kept): the group's 64 MiB threshold was not applied")
    }

    @Test("0 changes nothing and reports success: the threshold set before stays")
    func zeroLeavesMallocAlone() throws {
        // 1 MiB, then 0: still 1 MiB, so the freed frames go back to the kernel.
        let freed = try probe(["zero"])
        #expect(freed.trimmed, "\(freed): applying 0 changed the threshold")
    }
}
