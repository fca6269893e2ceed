import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Both io backends: every integration test runs on each.
let backends: [IOBackendKind] = [.uring, .epoll]

/// A handler for tests: routes by path.
final class TestWorker: WorkerHandler {
    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        switch request.path {
        case "/hello":
            return .response(WorkerResponse(status: .ok, headerFields: [.contentType: "text/plain"], body: "hello"))
        case "/echo":
            var body = Array("\(request.method) \(request.target) q=\(request.query)\n".utf8)
            body += request.body
            return .response(WorkerResponse(status: .ok, body: body))
        case "/big":
            let n = Int(request.query.split(separator: "=").last ?? "") ?? 65_536
            return .response(WorkerResponse(status: .ok, body: [UInt8](repeating: UInt8(ascii: "x"), count: n)))
        case "/shard":
            return .response(WorkerResponse(status: .ok, body: "ok"))
        default:
            if request.path.hasPrefix("/n/") {
                return .response(WorkerResponse(status: .ok, body: String(request.path.dropFirst(3))))
            }
            return .notHandled
        }
    }
}

/// A running broker on 127.0.0.1 with an ephemeral port.
final class ServerFixture {
    let broker: Broker
    var port: Int { broker.port }

    init(backend: IOBackendKind, shards: Int = 2,
         configure: (inout BrokerConfiguration) -> Void = { _ in },
         worker: @escaping @Sendable (ShardContext) -> WorkerHandler = { _ in TestWorker() }) throws {
        raiseFileLimit()
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.backend = backend
        c.io.shardCount = shards
        c.io.recvBufferCount = 256
        c.io.tickMilliseconds = 10
        c.sendDateHeader = false
        configure(&c)
        broker = Broker(configuration: c, log: { _ in }, handlerFactory: worker)
        try broker.start()
        #expect(broker.backend == backend)
    }

    func client(timeoutMilliseconds: Int = 5000) throws -> TestClient {
        try TestClient(port: port, receiveTimeoutMilliseconds: timeoutMilliseconds)
    }

    /// Waits until the broker holds no connection.
    func waitForNoConnections() -> Bool {
        waitUntil(timeoutMilliseconds: 10_000) { broker.openConnections == 0 }
    }

    func stop() { broker.shutdown(graceMilliseconds: 1000) }

    func metric(_ name: String) -> Int {
        var total = 0
        for line in broker.metricsText().split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            let key = parts[0].split(separator: "{")[0]
            if key == name { total += Int(parts[1]) ?? 0 }
        }
        return total
    }
}

func get(_ path: String, _ extra: String = "") -> String {
    "GET \(path) HTTP/1.1\r\nHost: t\r\n\(extra)\r\n"
}
