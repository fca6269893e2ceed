import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// What `malloc_trim_threshold_bytes` does to freed frames, measured in a process of its own
/// (`Tests/SwitchboardIOTests/MallocTrimTests.swift`). Not a product.
///
/// `switchboard-malloc-probe apply BYTES` applies the threshold (`MallocTrim.apply`);
/// `switchboard-malloc-probe group BYTES` starts (and stops) a one-shard group configured with it;
/// `switchboard-malloc-probe zero` applies 1 MiB, then 0 (which must leave the 1 MiB).
/// Then it makes two turns' worth of frames (800 × 16 KiB; 100 connections echoing 16 KiB
/// make 400 a turn), writes them, frees them and prints `top N of M all N' of M'`: of the M
/// whole pages inside the freed frames at the top of the arena (M' inside all of them), the N
/// (N') no longer resident (`mincore`), which the next turn would fault in.
///
/// Why a process of its own: where freed memory goes depends on the arena's history. In the
/// test process, after hundreds of tests, frames came from holes in the middle of the heap
/// (nothing to trim at any threshold) or spilled into a new 64 MiB heap (unmapped once wholly
/// free, at any threshold). Here they come from the top of a fresh main arena.

/// A shard handler that does nothing: the group is started for its configuration's effect.
final class IdleHandler: ShardEventHandler {
    func connectionOpened(_ id: SocketID) {}
    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {}
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
    func connectionClosed(_ id: SocketID) {}
}

func fail(_ message: String) -> Never {
    let line = Array("switchboard-malloc-probe: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

let arguments = CommandLine.arguments.dropFirst()
switch (arguments.first, arguments.dropFirst().first.flatMap { Int($0) }) {
case ("apply", let bytes?):
    guard MallocTrim.apply(trimThresholdBytes: bytes) else { fail("glibc refused \(bytes)") }
case ("group", let bytes?):
    var c = IOConfiguration()
    c.backend = .epoll
    c.shardCount = 1
    c.recvBufferCount = 64
    c.mallocTrimThresholdBytes = bytes
    if let problem = c.validate() { fail("\(problem)") }
    let started = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in IdleHandler() }
    do { try started.start() } catch { fail("group did not start: \(error)") }
    // Stopped before the measure: its threads would allocate where the frames are measured
    // (the setting is process-wide, and stays).
    started.shutdown(graceMilliseconds: 500)
case ("zero", nil):
    guard MallocTrim.apply(trimThresholdBytes: 1 << 20), MallocTrim.apply(trimThresholdBytes: 0) else { fail("glibc refused") }
default:
    fail("usage: switchboard-malloc-probe apply BYTES | group BYTES | zero")
}

let count = 800, size = 16_384
let pageBytes = Int(sysconf(Int32(_SC_PAGESIZE)))
var blocks = [Int](repeating: 0, count: count)
for i in 0..<count {
    guard let p = malloc(size) else { fail("malloc") }
    memset(p, 0x5A, size)  // written, as a frame's bytes are
    blocks[i] = Int(bitPattern: p)
}
// The last run of blocks that follow one another in memory, the one that ends at the top of
// the arena: the first blocks may fill holes left below it (by the group's start and stop),
// which no threshold trims. Apart, neighbours are a chunk header (16 bytes) from touching.
var runStart = count - 1
while runStart > 0 {
    let gap = blocks[runStart] - blocks[runStart - 1]
    guard gap > 0 && gap <= size + 16 else { break }
    runStart -= 1
}
for address in blocks { free(UnsafeMutableRawPointer(bitPattern: address)) }
// Only the addresses are used from here on: the whole pages inside each freed block (a block's
// first bytes hold the allocator's links).
/// Whole pages inside `start`'s block, and how many of them are no longer resident.
func residency(_ start: Int) -> (pages: Int, givenBack: Int) {
    let first = (start + pageBytes - 1) / pageBytes * pageBytes
    let end = (start + size) / pageBytes * pageBytes
    guard end > first else { return (0, 0) }
    let n = (end - first) / pageBytes
    var vector = [UInt8](repeating: 0, count: n)
    // ENOMEM: not mapped any more (the main arena's break moved down).
    if mincore(UnsafeMutableRawPointer(bitPattern: first), end - first, &vector) != 0 { return (n, n) }
    return (n, vector[0..<n].reduce(0) { $0 + ($1 & 1 == 0 ? 1 : 0) })
}
var top = (pages: 0, givenBack: 0), all = (pages: 0, givenBack: 0)
for (i, start) in blocks.enumerated() {
    let r = residency(start)
    all.pages += r.pages
    all.givenBack += r.givenBack
    if i >= runStart {
        top.pages += r.pages
        top.givenBack += r.givenBack
    }
}
print("top \(top.givenBack) of \(top.pages) all \(all.givenBack) of \(all.pages)")
