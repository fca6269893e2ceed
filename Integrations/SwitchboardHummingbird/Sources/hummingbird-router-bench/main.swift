// One Hummingbird router, two servers, for Benchmarks/scripts/hummingbird-router-bench.sh:
//
//   hummingbird-router-bench --server switchboard --port N --threads 1   (Switchboard's shards)
//   hummingbird-router-bench --server hummingbird --port N --threads 1   (Hummingbird's NIO server)
//
// Both serve GET /hello (a 17-byte JSON body) through the same route closure; nothing is
// logged per request. SIGTERM/SIGINT stop either gracefully.
import Hummingbird
import Logging
import NIOPosix
import ServiceLifecycle
import Switchboard
import SwitchboardHummingbird
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    let text = "hummingbird-router-bench: \(message)\nusage: hummingbird-router-bench --server switchboard|hummingbird [--port N] [--threads N]\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

var server = ""
var port = 8080
var threads = 1
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fail("\(flag) needs a value") }
    switch flag {
    case "--server": server = value
    case "--port": port = Int(value) ?? -1
    case "--threads": threads = Int(value) ?? 0
    default: fail("unknown option \(flag)")
    }
}
guard (0...65535).contains(port), threads >= 1 else { fail("bad --port or --threads") }

var logger = Logger(label: "hummingbird-router-bench")
logger.logLevel = .notice

let helloBody = ByteBuffer(string: #"{"hello":"world"}"#)
func addRoutes<Context: RequestContext>(_ router: Router<Context>) {
    router.get("/hello") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: helloBody))
    }
}

switch server {
case "switchboard":
    let router = Router(context: SwitchboardRequestContext.self)
    addRoutes(router)
    var configuration = BrokerConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = port
    configuration.io.shardCount = threads
    let broker = Broker(router: router, configuration: configuration, logger: logger)
    try await ServiceGroup(services: [broker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
case "hummingbird":
    let router = Router()
    addRoutes(router)
    let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let app = Application(router: router,
                          configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: nil, backlog: 4096),
                          eventLoopGroupProvider: .shared(eventLoopGroup), logger: logger)
    try await app.runService()
    try await eventLoopGroup.shutdownGracefully()
default:
    fail("--server must be switchboard or hummingbird")
}
