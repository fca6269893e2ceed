// cb-bench: connection-broker channel benchmark on the Swift SDK (SwitchboardClient).
//
//   cb-bench [--pairs N] [--duration SECONDS] [--warmup SECONDS] [--size BYTES] URL
//
// Each pair is two SDK clients (roles "bench-a"/"bench-b"); A opens a channel to B; B echoes
// every message back on the channel. Each A runs a closed loop: send (resolves on the broker's
// channel_message_sent), then wait for the echo. Reports confirmed sends per second (both
// directions) and the round trip A -> B -> A (p50/p90/p99/max, HdrHistogram).
import ArgumentParser
import Foundation
import Histogram
import SwitchboardClient
import Synchronization

struct CBBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cb-bench",
        abstract: "connection-broker channel benchmark on the Swift SDK (SwitchboardClient).",
        discussion: """
            Each pair is two SDK clients (roles "bench-a"/"bench-b"); A opens a channel to B; B echoes every \
            message back on the channel. Each A runs a closed loop: send (resolves on the broker's \
            channel_message_sent), then wait for the echo. Reports confirmed sends per second (both directions) \
            and the round trip A -> B -> A (p50/p90/p99/max).

            The run FAILS (exit 1) when a pair fails (connect, open, send) or nothing was confirmed in the \
            measured window. Exit status: 0 passed, 1 failed, 2 usage error.
            """
    )

    @Option(help: "Client pairs.")
    var pairs = 1
    @Option(help: ArgumentHelp("Measured time in seconds.", valueName: "seconds"))
    var duration = 10.0
    @Option(help: ArgumentHelp("Warm-up in seconds, not measured.", valueName: "seconds"))
    var warmup = 2.0
    @Option(help: ArgumentHelp("Payload: a JSON string of this many bytes.", valueName: "bytes"))
    var size = 64
    @Argument(help: ArgumentHelp("The broker, ws://127.0.0.1:PORT/ (loopback targets only).", valueName: "url"))
    var url: String

    func validate() throws {
        guard url.hasPrefix("ws://127.0.0.1") || url.hasPrefix("ws://localhost") else {
            throw ValidationError("loopback targets only (ws://127.0.0.1:PORT/), got '\(url)'")
        }
        guard pairs >= 1 else { throw ValidationError("--pairs expects at least 1, got \(pairs)") }
        guard duration > 0, duration.isFinite else { throw ValidationError("--duration expects seconds > 0") }
        guard warmup >= 0, warmup.isFinite else { throw ValidationError("--warmup expects seconds >= 0") }
        guard size >= 0 else { throw ValidationError("--size expects bytes >= 0") }
    }
}

/// The parsed values, plain and Sendable, for the pair tasks.
struct Config: Sendable {
    var url: String
    var pairs: Int
    var duration: Double
    var warmup: Double
    var size: Int
}

func parse() -> Config {
    let c = parseCommand()
    return Config(url: c.url, pairs: c.pairs, duration: c.duration, warmup: c.warmup, size: c.size)
}

func parseCommand() -> CBBench {
    do {
        return try CBBench.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        // --help: the help text on stdout, exit 0. A usage error: message and usage on stderr,
        // exit 2 (not ArgumentParser's 64: the scripts and docs say 2).
        if CBBench.exitCode(for: error) == .success {
            print(CBBench.fullMessage(for: error))
            exit(0)
        }
        FileHandle.standardError.write(Data((CBBench.fullMessage(for: error) + "\n").utf8))
        exit(2)
    }
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
// Every pair runs to the end; a pair that fails is counted, not a crash of the whole run.
let pairFailures = await withTaskGroup(of: String?.self) { group in
    for i in 0..<config.pairs {
        group.addTask {
            do { try await runPair(i); return nil } catch { return "pair \(i): \(error)" }
        }
    }
    var failed: [String] = []
    for await f in group { if let f { failed.append(f) } }
    return failed
}
let seconds = try await measureTask.value
let s = stats.state.withLock { $0 }
let h = s.histogram
print("cb-bench \(config.url) pairs \(config.pairs) size \(config.size) B duration \(config.duration) s (warm-up \(config.warmup) s)")
print(String(format: "  confirmed sends: %.0f msg/s (%d in %.2f s)", Double(s.confirmed) / seconds, s.confirmed, seconds))
print("  round trip µs: p50 \(h.valueAtPercentile(50)) p90 \(h.valueAtPercentile(90)) p99 \(h.valueAtPercentile(99)) max \(h.max) (n=\(h.totalCount))")
var failures = pairFailures.sorted()
if s.confirmed == 0 { failures.append("nothing was confirmed in the measured window") }
if failures.isEmpty {
    print("  result: PASSED")
} else {
    print("  result: FAILED")
    for f in failures {
        print("  failed: \(f)")
        FileHandle.standardError.write(Data("cb-bench: FAILED: \(f)\n".utf8))
    }
    exit(1)
}
