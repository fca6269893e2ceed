import Switchboard
import SwitchboardProtocols
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The RPC model in one process: every path speaks the amqp-swarm protocol and each connection
/// is its own node.
///
/// `switchboard-rpc-example [--host ADDR] [--port N (0: any free port)] [--io-backend auto|uring|epoll] [--shards N]`
///
/// Handlers (client requests):
/// - `echo(...args)` returns the array of its arguments;
/// - `fail()` throws an endpoint error, message `"fail"`, data `{"x":1}`;
/// - `slow()` never answers (other requests keep being answered);
/// - `ask(name, ...args)` sends `name(...args)` to this node's own client and returns its result,
///   or passes the client's error (or this node's 1 s timeout) on unchanged;
/// - `whoami-result()`: right after `init` the node asks its client `whoami()`; this returns
///   `{"result":R}`, `{"error":{errorType,errorSubtype,message,data}}`, or `null` before the answer;
/// - `node-id()` returns this node's id; `call(nodeId, name, ...args)` sends a server request
///   and `relay(nodeId, name, ...args)` a remote client request to another node (the target
///   answers server requests `echo` and `whoami-result` like its client requests);
/// - any other name: protocol/unhandled.
/// The node's own requests time out after 1 s. Logs `listening on HOST:PORT`.

var configuration = BrokerConfiguration()
configuration.port = 0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    guard let value = arguments.next() else {
        Broker.standardErrorLog("switchboard-rpc-example: \(arg) needs a value")
        exit(2)
    }
    do {
        switch arg {
        case "--port": try configuration.set("port", value)
        case "--host": try configuration.set("host", value)
        case "--io-backend": try configuration.set("io_backend", value)
        case "--shards": try configuration.set("shards", value)
        default: throw ConfigurationError(line: 0, message: "unknown argument \(arg)")
        }
    } catch {
        Broker.standardErrorLog("switchboard-rpc-example: \(error)")
        exit(2)
    }
}

/// What the node's `whoami` request to its client came to.
final class WhoamiOutcome: Sendable {
    private let value = Mutex<RPCValue>(.null)
    func set(_ v: RPCValue) { value.withLock { $0 = v } }
    var current: RPCValue { value.withLock { $0 } }
}

func errorObject(_ e: RPCError) -> RPCValue {
    let p = e.payload
    return ["error": ["errorType": .string(p.errorType.rawValue),
                      "errorSubtype": p.errorSubtype.map { .string($0.rawValue) } ?? (p.otherSubtype.map { .string($0) } ?? .null),
                      "message": .string(p.message), "data": p.data]]
}

var options = RPCServerOptions()
options.requestTimeoutMilliseconds = 1000
let rpc = RPCServer(options: options) { node in
    let whoami = WhoamiOutcome()
    let echo: RPCHandler = { _, args in .array(args) }
    let whoamiResult: RPCHandler = { _, _ in whoami.current }
    node.client.on("echo", echo)
    node.client.on("fail") { ctx, _ in try ctx.throw("fail", ["x": 1]) }
    node.client.on("slow") { ctx, _ in
        // Never answers: holds the request until the node closes.
        while ctx.node.isOpen { try await Task.sleep(for: .seconds(1)) }
        throw RPCError.disconnected
    }
    node.client.on("ask") { ctx, args in
        guard let name = args.first?.stringValue else { try ctx.throw("ask needs a request name", nil) }
        return try await ctx.node.client.send(name, Array(args.dropFirst()))
    }
    node.client.on("whoami-result", whoamiResult)
    node.client.on("node-id") { ctx, _ in .string(ctx.node.id) }
    node.client.on("call") { ctx, args in
        guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("call needs a node id and a name", nil) }
        return try await ctx.node.server.send(to: target, name, Array(args.dropFirst(2)))
    }
    node.client.on("relay") { ctx, args in
        guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("relay needs a node id and a name", nil) }
        return try await ctx.node.remoteClient.send(to: target, name, Array(args.dropFirst(2)))
    }
    node.server.on("echo", echo)
    node.server.on("whoami-result", whoamiResult)
    Task {
        do throws(RPCError) {
            whoami.set(["result": try await node.client.send("whoami")])
        } catch {
            whoami.set(errorObject(error))
        }
    }
}

// Only this thread takes SIGINT/SIGTERM (threads started later inherit the mask).
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGINT)
sigaddset(&signals, SIGTERM)
pthread_sigmask(SIG_BLOCK, &signals, nil)

let broker = Broker(configuration: configuration, handlerFactory: rpc.handlerFactory())
broker.additionalMetrics = { rpc.metrics.prometheusText }
do {
    try broker.start()
} catch {
    Broker.standardErrorLog("switchboard-rpc-example: \(error)")
    exit(1)
}
Broker.standardErrorLog("switchboard-rpc-example listening on \(configuration.host):\(broker.port)")
var signal: Int32 = 0
sigwait(&signals, &signal)
broker.shutdown()
