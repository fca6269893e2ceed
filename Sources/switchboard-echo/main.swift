import Switchboard
#if canImport(Glibc)
import Glibc
#endif

/// An echo server on the public API, for the Autobahn conformance run and the benchmarks.
///
/// `switchboard-echo [--port N] [--host ADDR] [--io-backend auto|uring|epoll] [--shards N] [--config FILE]`
///
/// - Any path except those under `/broadcast`: every message goes back to its sender.
/// - `/broadcast` and `/broadcast/NAME`: the socket joins the channel named by the path on
///   upgrade, and every message it sends goes to every member of that channel (itself
///   included), like the hummingbird peer's `/broadcast`.

final class EchoHandler: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        if request.path == "/broadcast" || request.path.hasPrefix("/broadcast/") {
            let channel = Array(request.path.utf8)
            context.subscribe(socketId, ChannelName(channel))
            return .accept(token: channel)
        }
        return .accept()
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        if let channel = token {
            context.publish(ChannelName(channel), message)
        } else {
            context.send(socketId, message)
        }
    }
}

var configuration = BrokerConfiguration()
configuration.port = 9001
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    guard let value = arguments.next() else {
        Broker.standardErrorLog("switchboard-echo: \(arg) needs a value")
        exit(2)
    }
    do {
        switch arg {
        case "--port": try configuration.set("port", value)
        case "--host": try configuration.set("host", value)
        case "--io-backend": try configuration.set("io_backend", value)
        case "--shards": try configuration.set("shards", value)
        case "--config":
            guard let f = fopen(value, "rb") else { throw ConfigurationError(line: 0, message: "cannot read \(value)") }
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                bytes += buf[0..<n]
                if n < buf.count { break }
            }
            fclose(f)
            try configuration.apply(configurationText: String(decoding: bytes, as: UTF8.self))
        default: throw ConfigurationError(line: 0, message: "unknown argument \(arg)")
        }
    } catch {
        Broker.standardErrorLog("switchboard-echo: \(error)")
        exit(2)
    }
}

let broker = Broker(configuration: configuration) { EchoHandler($0) }
do {
    try broker.run()
} catch {
    Broker.standardErrorLog("switchboard-echo: \(error)")
    exit(1)
}
