// The README's example chat server, built only on Switchboard's public API: rooms are channels.
//
//   swift run switchboard-chat --port 3005
//   then send text messages: "join lobby", "say lobby hello", "leave lobby"
//
import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine

final class ChatHandler: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        // The query string names the user: ws://host:3005/?name=ada
        let name = request.query.split(separator: "&").first { $0.hasPrefix("name=") }.map { String($0.dropFirst(5)) }
        return .accept(token: Array((name ?? "anonymous").utf8))
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { return }
        let name = String(decoding: token ?? [], as: UTF8.self)
        let parts = text.split(separator: " ", maxSplits: 2).map(String.init)
        switch (parts.first, parts.count) {
        case ("join", 2):
            let room = ChannelName(parts[1])
            if context.subscribe(socketId, room) == .subscribed {
                context.publish(room, .text("* \(name) joined \(parts[1])"))
            }
        case ("leave", 2):
            let room = ChannelName(parts[1])
            if context.unsubscribe(socketId, room) {
                context.publish(room, .text("* \(name) left \(parts[1])"))
            }
        case ("say", 3):
            context.publish(ChannelName(parts[1]), .text("<\(name)> \(parts[2])"))
        default:
            context.send(socketId, .text("commands: join ROOM | leave ROOM | say ROOM TEXT"))
        }
    }

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        // Nothing to do: a closed socket leaves all its rooms by itself.
    }
}

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-chat",
        abstract: "The README's example chat server: rooms are channels.",
        version: "switchboard-chat 0.1.0")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        var defaults = BrokerConfiguration()
        defaults.port = 3005
        if options.printConfigKeys { print(ConfigurationFile.keyList([BrokerConfiguration.self]), terminator: ""); return }
        if options.printDefaultConfig { print(ConfigurationFile.example([("broker", defaults)]), terminator: ""); return }
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard-chat")
        let configuration = try ServerRunner.brokerConfiguration(options, defaults: defaults, name: "switchboard-chat", logger: logger)
        let broker = Broker(configuration: configuration, logger: logger) { ChatHandler($0) }
        try await ServerRunner.run([broker], name: "switchboard-chat", logger: logger)
    }
}

await ServerRunner.main(ChatCommand.self)
