// cb-bench: connection-broker channel benchmark on the Swift SDK (SwitchboardClient).
//
//   cb-bench [--pairs N] [--duration SECONDS] [--warmup SECONDS] [--size BYTES] URL
//
// Each pair is two SDK clients (roles "bench-a"/"bench-b"); A opens a channel to B; B echoes
// every message back on the channel. Each A runs a closed loop: send (resolves on the broker's
// channel_message_sent), then wait for the echo. Reports confirmed sends per second (both
// directions) and the round trip A -> B -> A (p50/p90/p99/max, HdrHistogram).
import Foundation
import Histogram
import SwitchboardClient
import Synchronization

struct Config {
    var url = ""
    var pairs = 1
    var duration = 10.0
    var warmup = 2.0
    var size = 64
}

func parse() -> Config {
    var c = Config()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--pairs": c.pairs = Int(args.next() ?? "") ?? 1
        case "--duration": c.duration = Double(args.next() ?? "") ?? 10
        case "--warmup": c.warmup = Double(args.next() ?? "") ?? 2
        case "--size": c.size = Int(args.next() ?? "") ?? 64
        case "-h", "--help":
            print("usage: cb-bench [--pairs N] [--duration S] [--warmup S] [--size BYTES] ws://127.0.0.1:3004/")
            exit(0)
        default: c.url = a
        }
    }
    guard c.url.hasPrefix("ws://127.0.0.1") || c.url.hasPrefix("ws://localhost") else {
        FileHandle.standardError.write("cb-bench: loopback targets only (ws://127.0.0.1:PORT/)\n".data(using: .utf8)!)
        exit(2)
    }
    return c
}

final class Stats: Sendable {
    struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var confirmed = 0
        var measuring = false
    }
    let state = Mutex(State())
    func record(roundTripMicroseconds: UInt64, confirmed: Int) {
        state.withLock { s in
            guard s.measuring else { return }
            s.histogram.record(roundTripMicroseconds)
            s.confirmed += confirmed
        }
    }
}

/// Delivers echoes to the waiting sender. One lock for both fields: an echo arriving between
/// the waiter's check and its park must not be lost.
final class EchoWaiter: Sendable {
    struct State {
        var pending: CheckedContinuation<Void, Never>?
        var early = 0
    }
    let state = Mutex(State())
    func arrived() {
        let c: CheckedContinuation<Void, Never>? = state.withLock { s in
            if let p = s.pending { s.pending = nil; return p }
            s.early += 1
            return nil
        }
        c?.resume()
    }
    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.early > 0 { s.early -= 1; return true }
                s.pending = c
                return false
            }
            if ready { c.resume() }
        }
    }
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

let config = parse()
let stats = Stats()
let payload = JSONValue.string(String(repeating: "x", count: max(0, config.size)))
let stopAt = Mutex<UInt64>(.max)

func runPair(_ i: Int) async throws {
    let a = BrokerClient(url: config.url), b = BrokerClient(url: config.url)
    try await a.connect(role: "bench-a")
    try await b.connect(role: "bench-b")
    let echoes = EchoWaiter()
    b.onIncomingChannel = { channel in
        channel.onMessage = { message in Task { try? await channel.send(message) } }
    }
    let channel = try await a.openChannel(b.myId!)
    channel.onMessage = { _ in echoes.arrived() }
    while now() < stopAt.withLock({ $0 }) {
        let t0 = now()
        try await channel.send(payload)   // confirmed by the broker
        await echoes.wait()                // B's echo (itself confirmed to B)
        stats.record(roundTripMicroseconds: (now() - t0) / 1000, confirmed: 2)
    }
    await a.disconnect()
    await b.disconnect()
}

let started = now()
stopAt.withLock { $0 = started + UInt64((config.warmup + config.duration) * 1e9) }
let measureTask = Task {
    try await Task.sleep(for: .seconds(config.warmup))
    stats.state.withLock { $0.measuring = true }
    let t0 = now()
    try await Task.sleep(for: .seconds(config.duration))
    stats.state.withLock { $0.measuring = false }
    return Double(now() - t0) / 1e9
}
try await withThrowingTaskGroup(of: Void.self) { group in
    for i in 0..<config.pairs { group.addTask { try await runPair(i) } }
    try await group.waitForAll()
}
let seconds = try await measureTask.value
let s = stats.state.withLock { $0 }
let h = s.histogram
print("cb-bench \(config.url) pairs \(config.pairs) size \(config.size) B duration \(config.duration) s (warm-up \(config.warmup) s)")
print(String(format: "  confirmed sends: %.0f msg/s (%d in %.2f s)", Double(s.confirmed) / seconds, s.confirmed, seconds))
print("  round trip µs: p50 \(h.valueAtPercentile(50)) p90 \(h.valueAtPercentile(90)) p99 \(h.valueAtPercentile(99)) max \(h.max) (n=\(h.totalCount))")
