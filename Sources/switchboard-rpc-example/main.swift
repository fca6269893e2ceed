import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine
import SwitchboardProtocols
import Synchronization

/// The RPC model in one process: every path speaks the amqp-swarm protocol and each connection
/// is its own node.
///
/// `switchboard-rpc-example [--host ADDR] [--port N (0: any free port, the default)] [--io-backend auto|uring|epoll] [--shards N]`
/// (`--help` lists every option: the server options of `switchboard`)
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

func makeRPCServer() -> RPCServer {
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
    return rpc
}

struct RPCExampleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-rpc-example",
        abstract: "The amqp-swarm RPC model: every path speaks the protocol, each connection is a node.",
        version: "switchboard-rpc-example 0.1.0")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        var defaults = BrokerConfiguration()
        defaults.port = 0
        if options.printConfigKeys { print(ConfigurationFile.keyList([BrokerConfiguration.self]), terminator: ""); return }
        if options.printDefaultConfig { print(ConfigurationFile.example([("broker", defaults)]), terminator: ""); return }
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard-rpc-example")
        let configuration = try ServerRunner.brokerConfiguration(options, defaults: defaults, name: "switchboard-rpc-example", logger: logger)
        let rpc = makeRPCServer()
        let broker = Broker(configuration: configuration, logger: logger, handlerFactory: rpc.handlerFactory())
        broker.additionalMetrics = { rpc.metrics.prometheusText }
        try await ServerRunner.run([broker], name: "switchboard-rpc-example", logger: logger)
    }
}

await ServerRunner.main(RPCExampleCommand.self)
