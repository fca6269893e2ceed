// peer-hummingbird: the Hummingbird 2 benchmark peer for Switchboard.
//
//   peer-hummingbird [--port N] [--host ADDR] [--threads N] [--tls-certificate PEM --tls-key PEM]
//
//   With --tls-certificate and --tls-key the port speaks TLS only (swift-nio-ssl, ALPN http/1.1):
//   the TLS peer of Benchmarks/scripts/tls-bench.sh.
//
//   GET /health   -> 200 {"status":"ok"} (application/json), same body bytes as Switchboard
//   WS  /ws       -> echoes every text/binary message back to its sender
//   WS  /broadcast-> every message a client sends is sent to every client connected to /broadcast
//                    (the sender included)
//
// Nothing is logged per request; the logger runs at .warning.

import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Arguments

struct Options {
    var host = "127.0.0.1"
    var port = 8080
    var threads = 1
    var tlsCertificate: String?
    var tlsKey: String?
}

func usage(_ message: String? = nil) -> Never {
    if let message { writeStderr("peer-hummingbird: \(message)\n") }
    writeStderr("usage: peer-hummingbird [--port N] [--host ADDR] [--threads N] [--tls-certificate PEM --tls-key PEM]\n")
    exit(message == nil ? 0 : 2)
}

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
}

func parseOptions() -> Options {
    var options = Options()
    var args = CommandLine.arguments.dropFirst()
    while let arg = args.popFirst() {
        func value() -> String {
            guard let v = args.popFirst() else { usage("\(arg) needs a value") }
            return v
        }
        func int() -> Int {
            let v = value()
            guard let n = Int(v) else { usage("\(arg): not an integer: \(v)") }
            return n
        }
        switch arg {
        case "--port": options.port = int()
        case "--host": options.host = value()
        case "--threads": options.threads = int()
        case "--tls-certificate": options.tlsCertificate = value()
        case "--tls-key": options.tlsKey = value()
        case "-h", "--help": usage()
        default: usage("unknown argument \(arg)")
        }
    }
    guard (0...65535).contains(options.port) else { usage("--port out of range") }
    guard options.threads >= 1 else { usage("--threads must be >= 1") }
    guard (options.tlsCertificate == nil) == (options.tlsKey == nil) else { usage("--tls-certificate and --tls-key go together") }
    return options
}

// MARK: - Broadcast hub

/// Connected /broadcast clients. Each has an unbounded outbound queue drained by its own writer
/// task, so one slow client never blocks the sender or the other clients.
final class BroadcastHub: Sendable {
    private let state = Mutex<(nextID: Int, clients: [Int: AsyncStream<WebSocketMessage>.Continuation])>((0, [:]))

    func join(_ continuation: AsyncStream<WebSocketMessage>.Continuation) -> Int {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.clients[id] = continuation
            return id
        }
    }

    func leave(_ id: Int) {
        let continuation = state.withLock { $0.clients.removeValue(forKey: id) }
        continuation?.finish()
    }

    func publish(_ message: WebSocketMessage) {
        // Yield under the lock: yield on an unbounded AsyncStream does not block or suspend.
        state.withLock { state in
            for continuation in state.clients.values { continuation.yield(message) }
        }
    }
}

// MARK: - Server

let options = parseOptions()

// Nothing is logged per request. PEER_LOG_LEVEL=debug|trace|... overrides for troubleshooting.
var logger = Logger(label: "peer-hummingbird")
logger.logLevel = getenv("PEER_LOG_LEVEL").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .warning

let healthBody = ByteBuffer(string: #"{"status":"ok"}"#)

let router = Router()
router.get("/health") { _, _ -> Response in
    Response(
        status: .ok,
        headers: [.contentType: "application/json"],
        body: ResponseBody(byteBuffer: healthBody)
    )
}

let maxMessageSize = 1 << 20
let hub = BroadcastHub()

let wsRouter = Router(context: BasicWebSocketRequestContext.self)
wsRouter.ws("/ws") { inbound, outbound, _ in
    for try await message in inbound.messages(maxSize: maxMessageSize) {
        switch message {
        case .text(let text): try await outbound.write(.text(text))
        case .binary(let buffer): try await outbound.write(.binary(buffer))
        }
    }
}
wsRouter.ws("/broadcast") { inbound, outbound, _ in
    let (queue, continuation) = AsyncStream<WebSocketMessage>.makeStream(bufferingPolicy: .unbounded)
    let id = hub.join(continuation)
    defer { hub.leave(id) }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            for await message in queue {
                switch message {
                case .text(let text): try await outbound.write(.text(text))
                case .binary(let buffer): try await outbound.write(.binary(buffer))
                }
            }
        }
        for try await message in inbound.messages(maxSize: maxMessageSize) {
            hub.publish(message)
        }
        // Inbound closed: stop this client's writer.
        group.cancelAll()
    }
}

let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)

var server: HTTPServerBuilder = .http1WebSocketUpgrade(
    webSocketRouter: wsRouter,
    configuration: .init(ws: .init(maxFrameSize: maxMessageSize))
)
if let certificate = options.tlsCertificate, let key = options.tlsKey {
    do {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        // Read as PEM explicitly: `.file(path)` guesses the format from the extension (".key" is not ".pem").
        let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        server = try .tls(server, tlsConfiguration: tls)
    } catch {
        writeStderr("peer-hummingbird: TLS: \(error)\n")
        exit(1)
    }
}

let app = Application(
    router: router,
    server: server,
    configuration: .init(
        address: .hostname(options.host, port: options.port),
        serverName: nil,
        backlog: 4096  // same as Switchboard's default listen backlog
    ),
    eventLoopGroupProvider: .shared(eventLoopGroup),
    logger: logger
)

// runService() installs SIGTERM/SIGINT graceful shutdown (swift-service-lifecycle).
do {
    try await app.runService()
} catch {
    writeStderr("peer-hummingbird: \(error)\n")
    exit(1)
}
try await eventLoopGroup.shutdownGracefully()
