// rpc-bench: request/response round trips of the RPC protocol (amqp-swarm wire format).
//
//   rpc-bench [--duration SECONDS] [--warmup SECONDS] [--clients N] [--concurrency K]
//             [--io-backend auto|uring|epoll] [--shards N]
//
// Starts a Switchboard RPC server in this process (127.0.0.1, ephemeral port, 2 shards by
// default) and measures, each for --duration seconds after --warmup:
//   1. client -> node: N RPCClient connections, each with K requests in flight (closed loops of
//      `echo(i)` over real WebSockets);
//   2. node -> node across shards: a node on shard 0 sends K concurrent server requests
//      (`echo`) to a node on shard 1 (through the id directory and the cross-shard rings).
// Reports round trips per second and p50/p99/max latency (HdrHistogram, µs).
import Foundation
import Histogram
import Switchboard
import SwitchboardClient
import SwitchboardProtocols
import Synchronization

struct Config {
    var duration = 5.0
    var warmup = 1.0
    var clients = 4
    var concurrency = 16
    var backend = "auto"
    var shards = 2
}

func parse() -> Config {
    var c = Config()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--duration": c.duration = Double(args.next() ?? "") ?? c.duration
        case "--warmup": c.warmup = Double(args.next() ?? "") ?? c.warmup
        case "--clients": c.clients = Int(args.next() ?? "") ?? c.clients
        case "--concurrency": c.concurrency = Int(args.next() ?? "") ?? c.concurrency
        case "--io-backend": c.backend = args.next() ?? c.backend
        case "--shards": c.shards = Int(args.next() ?? "") ?? c.shards
        default:
            print("usage: rpc-bench [--duration S] [--warmup S] [--clients N] [--concurrency K] [--io-backend auto|uring|epoll] [--shards N]")
            exit(a == "-h" || a == "--help" ? 0 : 2)
        }
    }
    return c
}

/// Latencies of the measured window.
final class Stats: Sendable {
    struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var measuring = false
        var errors = 0
    }
    let state = Mutex(State())

    func record(_ start: ContinuousClock.Instant, ok: Bool) {
        let micros = UInt64(max(0, (ContinuousClock.now - start) / .microseconds(1)))
        state.withLock { s in
            guard s.measuring else { return }
            if ok { s.histogram.record(micros) } else { s.errors += 1 }
        }
    }

    func report(_ label: String, seconds: Double) {
        state.withLock { s in
            let h = s.histogram
            let rate = Double(h.totalCount) / seconds
            print("\(label): \(Int(rate)) round trips/s, µs p50 \(h.valueAtPercentile(50)) p99 \(h.valueAtPercentile(99)) max \(h.max) (n=\(h.totalCount), errors \(s.errors))")
        }
    }
}

/// Runs `loops` closed loops of `body` for warmup + duration, measuring the duration part.
func measure(_ config: Config, loops: Int, _ body: @escaping @Sendable (Int) async -> Bool) async -> Stats {
    let stats = Stats()
    let stop = StopFlag()
    await withTaskGroup(of: Void.self) { group in
        for loop in 0..<loops {
            group.addTask {
                var i = 0
                while !stop.value.load(ordering: .relaxed) {
                    let start = ContinuousClock.now
                    let ok = await body(loop * 1_000_000 + i)
                    stats.record(start, ok: ok)
                    i += 1
                }
            }
        }
        group.addTask {
            try? await Task.sleep(for: .milliseconds(Int(config.warmup * 1000)))
            stats.state.withLock { $0.measuring = true }
            try? await Task.sleep(for: .milliseconds(Int(config.duration * 1000)))
            stats.state.withLock { $0.measuring = false }
            stop.value.store(true, ordering: .relaxed)
        }
    }
    return stats
}

final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

final class Nodes: Sendable {
    let byId = Mutex<[String: RPCNode]>([:])
}

let config = parse()
var configuration = BrokerConfiguration()
configuration.host = "127.0.0.1"
configuration.port = 0
configuration.io.shardCount = config.shards
do { try configuration.set("io_backend", config.backend) } catch { print("\(error)"); exit(2) }
let nodes = Nodes()
var options = RPCServerOptions()
options.pingIntervalMilliseconds = 0
options.requestTimeoutMilliseconds = 10_000
let rpc = RPCServer(options: options, nodeId: { r in r.query.hasPrefix("id=") ? String(r.query.dropFirst(3)) : nil }) { node in
    nodes.byId.withLock { $0[node.id] = node }
    node.client.on("echo") { _, args in .array(args) }
    node.server.on("echo") { _, args in .array(args) }
}
let broker = Broker(configuration: configuration, logger: .discarding, handlerFactory: rpc.handlerFactory())
try broker.start()
print("rpc-bench: server on 127.0.0.1:\(broker.port), \(broker.shardCount) shards (\(broker.backend.rawValue)); \(config.clients) clients × \(config.concurrency) in flight, \(config.duration) s")

var clientOptions = RPCClientOptions()
clientOptions.requestTimeout = .seconds(10)
clientOptions.pingInterval = .seconds(3600)
var clients: [RPCClient] = []
for i in 0..<max(config.clients, 2) {
    let c = RPCClient(url: "ws://127.0.0.1:\(broker.port)/?id=bench-\(i)", options: clientOptions)
    try await c.waitUntilReady()
    clients.append(c)
}

// 1. client -> node
let benchClients = Array(clients.prefix(config.clients))
let clientStats = await measure(config, loops: config.clients * config.concurrency) { n in
    let c = benchClients[(n / 1_000_000) % benchClients.count]
    return (try? await c.send("echo", [.number(Double(n))])) != nil
}
clientStats.report("client -> node", seconds: config.duration)

// 2. node -> node across shards
let all = nodes.byId.withLock { Array($0.values) }
if let a = all.first(where: { $0.shardIndex == 0 }), let b = all.first(where: { $0.shardIndex == 1 % broker.shardCount }) {
    let nodeStats = await measure(config, loops: config.concurrency) { n in
        (try? await a.server.send(to: b.id, "echo", [.number(Double(n))])) != nil
    }
    nodeStats.report("node -> node (shard \(a.shardIndex) -> \(b.shardIndex))", seconds: config.duration)
} else {
    print("node -> node: could not place nodes on two shards")
}

for c in clients { await c.close() }
broker.shutdown()
