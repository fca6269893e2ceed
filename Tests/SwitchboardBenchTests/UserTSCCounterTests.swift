import Foundation
import SwitchboardTestSupport
import Testing

/// Issue 16 item 3's measurement: the time-stamp-counter hooks (`Sources/CLiburing/sb_user_tsc.h`)
/// through the LD_PRELOAD library that measures the C++ peer (`Benchmarks/usertsc/preload.c`), and
/// the file reader `Benchmarks/scripts/user-tsc-window.py`. A workload makes an exact number of
/// wrapped calls with a known spin of cycles between them; the counts must come back exactly and
/// the cycles at least the spins'. (Switchboard's own measurement build, -DSB_USER_TSC, is built
/// by `Benchmarks/scripts/user-tsc.sh`, not by the test suite: it is a second release build.)
@Suite("User time by TSC: the measurement hooks")
struct UserTSCCounterTests {
    /// Round trips of the workload, and the cycles it spins before each call.
    static let roundTrips = 2_000
    static let spinCycles = 20_000
    /// Waits of 5 ms each on an empty epoll set: 500 ms asleep in the kernel, which must not count.
    static let sleeps = 100

    static let workload = """
        #include <stdint.h>
        #include <stdio.h>
        #include <sys/epoll.h>
        #include <sys/socket.h>
        #include <x86intrin.h>
        static void spin(uint64_t cycles) { uint64_t end = __rdtsc() + cycles; while (__rdtsc() < end) {} }
        int main(void) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
            char byte = 'x';
            for (int i = 0; i < \(roundTrips); i++) {
                spin(\(spinCycles));
                if (send(sv[0], &byte, 1, 0) != 1) return 3;
                spin(\(spinCycles));
                if (recv(sv[1], &byte, 1, 0) != 1) return 4;
            }
            int ep = epoll_create1(0);
            struct epoll_event ev;
            for (int i = 0; i < \(sleeps); i++) {
                if (epoll_wait(ep, &ev, 1, 5) != 0) return 5;
            }
            return 0;
        }
        """

    /// A C compiler: the Swift toolchain's clang (next to `swift` on PATH), else `cc`.
    static func compiler() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for name in ["clang", "cc", "gcc"] {
            for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
        }
        throw MissingTool("no C compiler (clang, cc or gcc) on PATH: the Swift toolchain's clang is enough")
    }

    @Test("every wrapped call counted once, the spins between them counted as user cycles")
    func countsWrappedCalls() throws {
        #if arch(x86_64)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("usertsc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let root = RepositoryTools.packageRoot.path
        let cc = try Self.compiler()
        let preload = directory + "/preload.so"
        let build = try runTool(cc, ["-O2", "-shared", "-fPIC", "-DSB_USER_TSC", "-o", preload, root + "/Benchmarks/usertsc/preload.c", "-ldl"])
        try #require(build.status == 0, "the preload library did not build: \(build.output)")
        try Self.workload.write(toFile: directory + "/workload.c", atomically: true, encoding: .utf8)
        let built = try runTool(cc, ["-O2", "-o", directory + "/workload", directory + "/workload.c"])
        try #require(built.status == 0, "the workload did not build: \(built.output)")

        // Without SB_USER_TSC_FILE the library counts nothing and writes no file.
        let plain = try runTool(directory + "/workload", [], environment: ["LD_PRELOAD": preload])
        #expect(plain.status == 0, "\(plain.output)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/counters"))

        let counted = try runTool(directory + "/workload", [], environment: ["LD_PRELOAD": preload, "SB_USER_TSC_FILE": directory + "/counters"])
        try #require(counted.status == 0, "the workload failed: \(counted.output)")
        let python = try runTool("/usr/bin/env", ["python3", root + "/Benchmarks/scripts/user-tsc-window.py", "--totals", directory + "/counters"])
        try #require(python.status == 0, "the reader failed: \(python.output)")
        let lines = python.output.split(separator: "\n").map { $0.split(separator: " ") }
        let rate = try #require(lines.first.flatMap { $0.count == 2 && $0[0] == "rate" ? UInt64($0[1]) : nil }, "no rate line: \(python.output)")
        #expect(rate > 200_000_000 && rate < 20_000_000_000, "TSC rate \(rate) per second")
        let threads = lines.dropFirst().compactMap { fields -> (calls: UInt64, cycles: UInt64, phases: [String: UInt64])? in
            guard fields.count >= 3, let calls = UInt64(fields[1]), let cycles = UInt64(fields[2]) else { return nil }
            // FROM>TO:CYCLES:STRETCHES: the stretches by phase.
            var phases: [String: UInt64] = [:]
            for phase in fields.dropFirst(3) {
                let parts = phase.split(separator: ":")
                if parts.count == 3, let stretches = UInt64(parts[2]) { phases[String(parts[0])] = stretches }
            }
            return (calls, cycles, phases)
        }
        // One thread; the constructor's own close(2) came before the mapping existed, so it is
        // not counted: exactly the workload's sends, receives and waits (epoll_create1 is not
        // wrapped).
        try #require(threads.count == 1, "threads: \(python.output)")
        #expect(threads[0].calls == UInt64(2 * Self.roundTrips + Self.sleeps))
        // The phases: each stretch is filed under the call before it and the call after it.
        #expect(threads[0].phases == [
            "send>receive": UInt64(Self.roundTrips), "receive>send": UInt64(Self.roundTrips - 1),
            "receive>wait": 1, "wait>wait": UInt64(Self.sleeps - 1),
        ], "\(threads[0].phases)")
        // Every spin but the first lies between two counted calls: at least that many cycles. The
        // first call opens the count (there is no earlier return to measure from).
        let spun = UInt64((2 * Self.roundTrips - 1) * Self.spinCycles)
        #expect(threads[0].cycles >= spun, "user cycles \(threads[0].cycles), spun \(spun)")
        // And not the kernel's time: the 500 ms asleep in epoll_wait would pass this bound (the
        // spins, ~30 ms, plus 300 ms for everything else in the user stretches: the loop, and
        // on a loaded host the steal and interrupts that land in them).
        #expect(threads[0].cycles < spun + rate * 3 / 10, "user cycles \(threads[0].cycles), spun \(spun)")
        #else
        Issue.record("the TSC hooks are x86-64 only (rdtsc)")
        #endif
    }
}
