import Logging
import Switchboard
import SwitchboardTestSupport
import Synchronization
import Testing

/// A log backend for tests: every record with its level and merged metadata.
final class RecordedLog: Sendable {
    struct Record: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])
    var all: [Record] { records.withLock { $0 } }
    func append(_ r: Record) { records.withLock { $0.append(r) } }

    /// A logger at `level` writing here.
    func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    struct Handler: LogHandler {
        let log: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            log.append(Record(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}

@Suite("swift-log: the host's Logger, levels and metadata", .serialized)
struct LoggingTests {
    func broker(_ log: RecordedLog, level: Logger.Level) throws -> Broker {
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = 2
        let broker = Broker(configuration: c, logger: log.logger(level: level)) { _ in DefaultsWorker() }
        try broker.start()
        return broker
    }

    @Test func startAndShutdownGoToTheInjectedLogger() throws {
        let log = RecordedLog()
        let b = try broker(log, level: .info)
        b.shutdown(graceMilliseconds: 0)
        let listening = try #require(log.all.first { $0.message.contains("listening on") })
        #expect(listening.level == .notice)
        #expect(listening.message == "switchboard listening on 127.0.0.1:\(b.port) with 2 shards (\(b.backend.rawValue))")
        #expect(log.all.allSatisfy { $0.level >= .info })
    }

    @Test func aClientCausedCloseLogsAtDebugWithShardAndSocket() throws {
        let log = RecordedLog()
        let b = try broker(log, level: .debug)
        defer { b.shutdown(graceMilliseconds: 0) }
        let client = try TestClient(port: b.port)
        #expect(try client.upgrade(path: "/").status == 101)
        // An unmasked client frame is a protocol error: close 1002.
        try client.sendFrame(opcode: 1, payload: Array("hi".utf8), masked: false)
        let close = try client.readFrame()
        #expect(close.closeCode == 1002)
        #expect(client.isClosedByServer())
        let record = try #require(log.all.first { $0.message.hasPrefix("websocket failed: close 1002") })
        #expect(record.level == .debug)
        let shard = try #require(record.metadata[SwitchboardLogKey.shard].flatMap { Int($0) })
        #expect(shard >= 0 && shard < 2)
        let socket = try #require(record.metadata[SwitchboardLogKey.socket])
        #expect(socket.isEmpty == false)
    }

    @Test func aboveDebugTheSameCloseLogsNothing() throws {
        let log = RecordedLog()
        let b = try broker(log, level: .info)
        defer { b.shutdown(graceMilliseconds: 0) }
        let client = try TestClient(port: b.port)
        #expect(try client.upgrade(path: "/").status == 101)
        try client.sendFrame(opcode: 1, payload: Array("hi".utf8), masked: false)
        #expect(try client.readFrame().closeCode == 1002)
        #expect(client.isClosedByServer())
        #expect(!log.all.contains { $0.message.hasPrefix("websocket failed") })
    }

    @Test func loggerHelpersSetShardAndSocket() {
        let id = SocketID(shard: 3, slot: 7, generation: 2)
        let logger = RecordedLog().logger(level: .info).forSocket(id)
        #expect(logger[metadataKey: SwitchboardLogKey.shard] == "3")
        #expect(logger[metadataKey: SwitchboardLogKey.socket] == "\(id)")
    }
}
