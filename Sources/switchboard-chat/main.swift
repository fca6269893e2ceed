// The browser chat: a page at `/` (rooms, a nickname, who is here, reconnect with what was
// missed) over Switchboard's WebSockets at `/ws`.
//
//   swift run switchboard-chat --port 3005      then open http://127.0.0.1:3005/
//
import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-chat",
        abstract: "A browser chat on Switchboard: rooms are channels; a page at / and WebSockets at /ws.",
        version: "switchboard-chat 0.1.0")

    @OptionGroup var options: ServerOptions

    @Option(help: "Messages each room keeps for clients that reconnect (>= 1).")
    var historyMessages: Int = ChatLimits().historyMessages

    @Option(help: "Rooms each shard keeps (>= 1); past it an empty room is forgotten.")
    var maxRoomsPerShard: Int = ChatLimits().maxRoomsPerShard

    @Option(help: "Messages a socket may send per second on average (>= 1); a burst of --message-burst is allowed.")
    var maxMessagesPerSecond: Int = ChatLimits().maxMessagesPerSecond

    @Option(help: "Messages a socket may send at once before --max-messages-per-second applies (>= 1).")
    var messageBurst: Int = ChatLimits().messageBurst

    func validate() throws {
        guard maxMessagesPerSecond >= 1 else { throw ValidationError("--max-messages-per-second must be >= 1") }
        guard messageBurst >= 1 else { throw ValidationError("--message-burst must be >= 1") }
        guard historyMessages >= 1 else { throw ValidationError("--history-messages must be >= 1") }
        guard maxRoomsPerShard >= 1 else { throw ValidationError("--max-rooms-per-shard must be >= 1") }
    }

    func run() async throws {
        var defaults = BrokerConfiguration()
        defaults.port = 3005
        defaults.webSocket.paths = ["/ws"]
        if options.printConfigKeys { print(ConfigurationFile.keyList([BrokerConfiguration.self]), terminator: ""); return }
        if options.printDefaultConfig { print(ConfigurationFile.example([("broker", defaults)]), terminator: ""); return }
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard-chat")
        let configuration = try ServerRunner.brokerConfiguration(options, defaults: defaults, name: "switchboard-chat", logger: logger)
        var limits = ChatLimits()
        limits.historyMessages = historyMessages
        limits.maxRoomsPerShard = maxRoomsPerShard
        limits.maxMessagesPerSecond = maxMessagesPerSecond
        limits.messageBurst = messageBurst
        let broker = ChatHandler.broker(configuration: configuration, limits: limits, logger: logger)
        try await ServerRunner.run([broker], name: "switchboard-chat", logger: logger)
    }
}

await ServerRunner.main(ChatCommand.self)
