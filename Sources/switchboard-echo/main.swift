import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine

/// An echo server on the public API, for the Autobahn conformance run and the benchmarks.
///
/// `switchboard-echo [--port N] [--host ADDR] [--io-backend auto|uring|epoll] [--shards N] [--config FILE]
/// [--set key=value]...` (`--help` lists every option; default port 9001)
///
/// - Any path except those under `/broadcast`: every message goes back to its sender.
/// - `/broadcast` and `/broadcast/NAME`: the socket joins the channel named by the path on
///   upgrade, and every message it sends goes to every member of that channel (itself
///   included), like the hummingbird peer's `/broadcast`. An upgrade whose subscription a
///   limit refuses (`max_channels_per_shard`, `max_subscriptions_per_socket`) gets 503.
/// - `GET /position/broadcast/NAME`: the epoch and offset (`EPOCH:OFFSET`, or `none`) of the
///   last message of channel `/broadcast/NAME` delivered on the shard that answers (run with
///   `--shards 1` to ask the node): the cluster tests compare nodes with it.
/// - `/direct`: addressed messages through the broker API (across nodes in a cluster):
///   `whoami` answers `id:N` (the socket id), `to:N:TEXT` sends TEXT to socket N, `close:N`
///   closes socket N (1000, reason `addressed`), `copy:FROM:TO` copies the subscribers of
///   channel FROM to TO (on every node in a cluster). In a cluster, every `/direct` socket gets
///   `died:N` when node N dies (`handleClusterNodeDied`, on each shard).

final class EchoHandler: WorkerHandler {
    let context: ShardContext
    /// This shard's `/direct` sockets (shard thread only: no lock).
    private var directSockets = Set<SocketID>()
    init(_ context: ShardContext) { self.context = context }

    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        guard request.path.hasPrefix("/position/") else { return .notHandled }
        let channel = ChannelName(String(request.path.dropFirst("/position".count)))
        return .response(.text(context.lastPosition(of: channel).map { "\($0.epoch):\($0.offset)" } ?? "none"))
    }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        if request.path == "/broadcast" || request.path.hasPrefix("/broadcast/") {
            let channel = Array(request.path.utf8)
            // A socket whose subscription was refused (a limit: `max_channels_per_shard`,
            // `max_subscriptions_per_socket`) would never see a broadcast: refuse it instead.
            switch context.subscribe(socketId, ChannelName(channel)) {
            case .subscribed, .alreadySubscribed: return .accept(token: channel)
            case let refused: return .reject(.text("subscription refused: \(refused)\n", status: .serviceUnavailable))
            }
        }
        if request.path == "/direct" {
            directSockets.insert(socketId)
            return .accept(token: Self.direct)
        }
        return .accept()
    }

    static let direct = Array("direct".utf8)

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) { directSockets.remove(socketId) }

    func handleClusterNodeDied(_ node: Int) {
        for id in directSockets { context.send(id, .text("died:\(node)")) }
    }

    /// The message lent (no `String` or array made for it): an echo or a publish sends its bytes
    /// as they are; only `/direct`'s commands are read as text.
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        // `token` first: the common echo has none, and comparing with `Self.direct` (a static
        // array) costs a lazy-global check (`swift_once`) per message.
        if let token, token == Self.direct, let text = message.text {
            let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            switch (parts.first, parts.count > 1 ? UInt64(parts[1]) : nil) {
            case ("whoami", _): context.send(socketId, .text("id:\(socketId.rawValue)"))
            case ("to", let raw?) where parts.count == 3: context.broker.send(SocketID(rawValue: raw), .text(String(parts[2])))
            case ("close", let raw?): context.broker.close(SocketID(rawValue: raw), code: .normalClosure, reason: "addressed")
            case ("copy", _) where parts.count == 3:
                context.broker.copySubscriptions(from: ChannelName(String(parts[1])), to: ChannelName(String(parts[2])))
            default: context.send(socketId, .text("error: whoami | to:ID:TEXT | close:ID"))
            }
        } else if let channel = token {
            context.publish(ChannelName(channel), message)
        } else {
            context.send(socketId, message)
        }
    }
}

struct EchoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-echo",
        abstract: "WebSocket echo and /broadcast server (Autobahn, interop and benchmark peer).",
        version: "switchboard-echo 0.1.0")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        var defaults = BrokerConfiguration()
        defaults.port = 9001
        if options.printConfigKeys { print(ConfigurationFile.keyList([BrokerConfiguration.self]), terminator: ""); return }
        if options.printDefaultConfig { print(ConfigurationFile.example([("broker", defaults)]), terminator: ""); return }
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard-echo")
        let configuration = try ServerRunner.brokerConfiguration(options, defaults: defaults, name: "switchboard-echo", logger: logger)
        let broker = Broker(configuration: configuration, logger: logger) { EchoHandler($0) }
        try await ServerRunner.run([broker], name: "switchboard-echo", logger: logger)
    }
}

await ServerRunner.main(EchoCommand.self)
