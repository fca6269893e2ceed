import Logging
import Switchboard
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

// switchboard-echo's /ws echo and /broadcast fan-out on the same library code, with a
// synchronous main: valgrind 3.19 dies (internal SIGSEGV) in the async main's parked main thread
// (libdispatch `_dispatch_sig_thread`), so instruction counts are taken on this one
// (Benchmarks/scripts/instructions-per-message.sh). No Foundation, which valgrind cannot run.
// `GET /health` (and `/metrics`) are the broker's built-in routes, as in switchboard-echo (KIND http).
//
//   valgrind-echo PORT uring|epoll
// Any path but /broadcast: every message goes back to its sender. /broadcast: the socket joins
// the channel on upgrade, and every message it sends goes to every member (itself included).

final class EchoHandler: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }

    // As switchboard-echo: the token is the channel's name, made into a `ChannelName` per publish.
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        guard request.path == "/broadcast" else { return .accept() }
        let channel = Array(request.path.utf8)
        switch context.subscribe(socketId, ChannelName(channel)) {
        case .subscribed, .alreadySubscribed: return .accept(token: channel)
        case let refused: return .reject(.text("subscription refused: \(refused)\n", status: .serviceUnavailable))
        }
    }

    // The message lent, as switchboard-echo takes it: its bytes go back (or to the channel)
    // with no `String` or array made for them.
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        if let channel = token {
            context.publish(ChannelName(channel), message)
        } else {
            context.send(socketId, message)
        }
    }
}

let arguments = CommandLine.arguments
// SHARDS (default 1): with 2, a fan-out's subscribers are spread over both shards, so the
// cross-shard hop's instructions show in the count per delivery (issue 16 item 5).
guard arguments.count == 3 || arguments.count == 4, let port = Int(arguments[1]),
    let backend = IOBackendKind(rawValue: arguments[2]),
    let shards = arguments.count == 4 ? Int(arguments[3]) : 1, (1...64).contains(shards)
else {
    print("usage: valgrind-echo PORT uring|epoll [SHARDS]")
    exit(2)
}
var configuration = BrokerConfiguration()
configuration.host = "127.0.0.1"
configuration.port = port
configuration.io.shardCount = shards
configuration.io.backend = backend
// valgrind 3.19 holds its one lock through an io_uring wait: the shards sleep in poll(2)
// instead, or the acceptor's first turn waits minutes (IOConfiguration.waitThroughPoll).
configuration.io.waitThroughPoll = true
// TLS_CERT and TLS_KEY (PEM files): a TLS listener on PORT + 1 as well (instructions per wss://
// echo); TLS_RECORD_LAYER=openssl keeps OpenSSL's record layer.
func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
if let certificate = environment("TLS_CERT"), let key = environment("TLS_KEY") {
    var tls = TLSConfiguration(port: port + 1, certificate: .init(chainPath: certificate, privateKeyPath: key))
    if let layer = environment("TLS_RECORD_LAYER") {
        guard let parsed = TLSConfiguration.RecordLayer(rawValue: layer) else { print("TLS_RECORD_LAYER: switchboard or openssl"); exit(2) }
        tls.recordLayer = parsed
    }
    configuration.tls = tls
}
// REPLY_CORK_BYTES: the epoll reply cork's size (`reply_cork_bytes`; 0 turns it off), so the
// cork's cost per echo can be counted against the queued path on the same build.
if let cork = environment("REPLY_CORK_BYTES") {
    guard let bytes = Int(cork) else { print("REPLY_CORK_BYTES: a byte count"); exit(2) }
    configuration.io.replyCorkBytes = bytes
}
var logger = Logger(label: "valgrind-echo")
logger.logLevel = .warning
let broker = Broker(configuration: configuration, logger: logger) { EchoHandler($0) }
do {
    try broker.start()
} catch {
    print("valgrind-echo: \(error)")
    exit(1)
}
print("listening on \(port)")
while true { sleep(3600) }
