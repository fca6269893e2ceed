import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine
import SwitchboardProtocols

/// A cluster node for the process-level tests (`Tests/SwitchboardClusterTests/
/// ClusterProcessProtocolTests.swift`): the broker API and RPC, each on its own path, driven
/// over WebSockets, so three processes of it over one Redis are a cluster a test can probe.
/// Not a product: no shipped binary exposes these calls (`switchboard-echo` has part of them).
///
/// `switchboard-cluster-testnode [server options: --port, --shards, --io-backend, --set key=value ...]`
///
/// - `/api` (WebSocket, text commands; every command of the broker API is the `Broker`'s, so
///   an id of another node goes through Redis):
///   `whoami` → `id:N`; `to:N:TEXT` sends TEXT to socket N; `close:N` closes socket N (4000,
///   reason `addressed`); `token:N:TEXT` sets socket N's token to TEXT, `untoken:N` clears it;
///   `mytoken` → `token:TEXT` (the token this message came with) or `token:none`;
///   `sub:CHANNEL` subscribes this socket (on its shard) → `subscribed:CHANNEL`;
///   `pub:CHANNEL:TEXT` publishes TEXT to CHANNEL (every subscriber on every node gets TEXT;
///   refused → `refused:CHANNEL`); `copy:FROM:TO` copies FROM's subscribers to TO on every node.
///   Every `/api` socket gets `died:N` when its shard hears that node N died.
/// - `/rpc` (amqp-swarm RPC; node id from `?id=NAME`; requests time out after 30 s, not 1 s,
///   so a loaded machine does not fail a test): client requests `call(ID, NAME, ...ARGS)`
///   (a server request to node ID) and `relay(ID, NAME, ...ARGS)` (a remote client request to
///   node ID's client); server request `echo` answers `{"from":SENDER,"to":ID,"args":ARGS}`;
///   remote client requests `tagged` get `"tag:ID"` appended to their arguments on the way.
final class APIHandler: WorkerHandler {
    let context: ShardContext
    /// This shard's `/api` sockets (shard thread only).
    private var sockets = Set<SocketID>()

    init(_ context: ShardContext) { self.context = context }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        sockets.insert(socketId)
        return .accept()
    }

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) { sockets.remove(socketId) }

    func handleClusterNodeDied(_ node: Int) {
        for id in sockets { context.send(id, .text("died:\(node)")) }
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { return }
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        let target = parts.count > 1 ? UInt64(parts[1]).map { SocketID(rawValue: $0) } : nil
        let broker = context.broker
        switch (parts[0], target, parts.count) {
        case ("whoami", _, 1): context.send(socketId, .text("id:\(socketId.rawValue)"))
        case ("to", let id?, 3): broker.send(id, .text(parts[2]))
        case ("close", let id?, 2): broker.close(id, code: .application(4000), reason: "addressed")
        case ("token", let id?, 3): broker.setToken(id, Array(parts[2].utf8))
        case ("untoken", let id?, 2): broker.setToken(id, nil)
        case ("mytoken", _, 1): context.send(socketId, .text("token:" + (token.map { String(decoding: $0, as: UTF8.self) } ?? "none")))
        case ("sub", _, 2):
            _ = context.subscribe(socketId, ChannelName(parts[1]))
            context.send(socketId, .text("subscribed:\(parts[1])"))
        case ("pub", _, 3):
            if !broker.publish(ChannelName(parts[1]), .text(parts[2])).isQueued { context.send(socketId, .text("refused:\(parts[1])")) }
        case ("copy", _, 3): broker.copySubscriptions(from: ChannelName(parts[1]), to: ChannelName(parts[2]))
        default: context.send(socketId, .text("error:unknown command"))
        }
    }
}

func makeRPCServer() -> RPCServer {
    var options = RPCServerOptions()
    options.requestTimeoutMilliseconds = 30_000
    return RPCServer(options: options, nodeId: { request in
        request.query.hasPrefix("id=") ? String(request.query.dropFirst(3)) : nil
    }) { node in
        node.client.on("call") { ctx, args in
            guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("call needs a node id and a name", nil) }
            return try await ctx.node.server.send(to: target, name, Array(args.dropFirst(2)))
        }
        node.client.on("relay") { ctx, args in
            guard let target = args.first?.stringValue, let name = args.dropFirst().first?.stringValue else { try ctx.throw("relay needs a node id and a name", nil) }
            return try await ctx.node.remoteClient.send(to: target, name, Array(args.dropFirst(2)))
        }
        node.server.on("echo") { ctx, args in ["from": .string(ctx.sender ?? ""), "to": .string(ctx.node.id), "args": .array(args)] }
        node.remoteClient.on("tagged") { ctx, _ in .array((ctx.result.arrayValue ?? []) + [.string("tag:\(ctx.node.id)")]) }
    }
}

struct TestNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-cluster-testnode",
        abstract: "The broker API and RPC over WebSockets, for the process-level cluster tests.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        var defaults = BrokerConfiguration()
        defaults.port = 0
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard-cluster-testnode")
        let configuration = try ServerRunner.brokerConfiguration(options, defaults: defaults, name: "switchboard-cluster-testnode", logger: logger)
        let rpc = makeRPCServer()
        let rpcFactory = rpc.handlerFactory()
        let broker = Broker(configuration: configuration, logger: logger) { context in
            RoutingWorkerHandler(routes: [
                .init(paths: ["/api"], handler: APIHandler(context)),
                .init(paths: ["/rpc"], handler: rpcFactory(context)),
            ])
        }
        broker.additionalMetricSamples = { rpc.metrics.samples }
        try await ServerRunner.run([broker], name: "switchboard-cluster-testnode", logger: logger)
    }
}

await ServerRunner.main(TestNodeCommand.self)
