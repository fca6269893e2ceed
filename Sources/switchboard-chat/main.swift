// The README's example chat server, built only on Switchboard's public API: rooms are channels.
//
//   swift run switchboard-chat --port 3005
//   then send text messages: "join lobby", "say lobby hello", "leave lobby"
//
import Switchboard

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

var configuration = BrokerConfiguration()
configuration.port = 3005
if let i = CommandLine.arguments.firstIndex(of: "--port"), i + 1 < CommandLine.arguments.count, let p = Int(CommandLine.arguments[i + 1]) {
    configuration.port = p
}
let broker = Broker(configuration: configuration) { ChatHandler($0) }
try broker.run()
