import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What the streaming consumers saw, across their tasks.
final class StreamLog: Sendable {
    struct Entry: Sendable {
        var bytes = 0
        var parts = 0
        var peakBufferedBytes = 0
        var error: RequestBodyError? = nil
        var done = false
    }
    private let state = Mutex<[String: Entry]>([:])
    /// Closed: consumers of `/upload/gated` wait before their first read.
    private let gate = Mutex<Bool>(false)
    func update(_ name: String, _ body: (inout Entry) -> Void) { state.withLock { body(&$0[name, default: Entry()]) } }
    subscript(name: String) -> Entry? { state.withLock { $0[name] } }
    func open() { gate.withLock { $0 = true } }
    var isOpen: Bool { gate.withLock { $0 } }
}

/// FNV-1a over a body, to compare what arrived with what was sent.
func fnv(_ bytes: some Sequence<UInt8>, _ seed: UInt32 = 2_166_136_261) -> UInt32 {
    var h = seed
    for b in bytes { h = (h ^ UInt32(b)) &* 16_777_619 }
    return h
}

/// `/upload/NAME` streams its body to a task that counts it and answers `n=BYTES h=FNV`;
/// `/upload/gated…` waits for the log's gate first; `/upload/early…` answers 401 at once
/// without reading (its stream is ended by the broker). The rest: `TestWorker`.
final class StreamingWorker: WorkerHandler {
    let log: StreamLog
    let plain = TestWorker()
    init(_ log: StreamLog) { self.log = log }

    func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery {
        head.path.hasPrefix("/upload/") ? .streamed : .buffered
    }

    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        guard request.path.hasPrefix("/upload/"), let stream = request.bodyStream else {
            return plain.handleHttpRequest(request, context: context)
        }
        let name = String(request.path.dropFirst(8))
        if name.hasPrefix("early") {
            Task(executorPreference: consumerExecutor) { [log] in
                do {
                    _ = try await stream.collect()
                } catch let error as RequestBodyError {
                    log.update(name) { $0.error = error }
                } catch {}
            }
            return .response(WorkerResponse(status: .unauthorized, body: "no"))
        }
        let slot = context.deferResponse()
        let log = log
        // On a thread of its own: these tests block their cooperative threads on sockets.
        Task(executorPreference: consumerExecutor) {
            if name.hasPrefix("gated") {
                while !log.isOpen { try? await Task.sleep(for: .milliseconds(5)) }
            }
            var count = 0
            var h: UInt32 = 2_166_136_261
            do {
                for try await part in stream {
                    count += part.count
                    h = fnv(part, h)
                    log.update(name) { $0.bytes = count; $0.parts += 1; $0.peakBufferedBytes = stream.peakBufferedBytes }
                }
                log.update(name) { $0.done = true }
                slot.respond(WorkerResponse(body: "n=\(count) h=\(h)"))
            } catch let error as RequestBodyError {
                log.update(name) { $0.error = error; $0.peakBufferedBytes = stream.peakBufferedBytes }
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        return .deferred(slot)
    }
}

/// Runs the consumers' tasks on one dedicated thread (a job queue under a mutex).
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var jobs: [UnownedJob] = []

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
        _ = OSThread.spawn(name: "consumers") { [self] in run() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
    }

    private func run() {
        while true {
            pthread_mutex_lock(&mutex)
            while jobs.isEmpty { pthread_cond_wait(&cond, &mutex) }
            let batch = jobs
            jobs.removeAll()
            pthread_mutex_unlock(&mutex)
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}

let consumerExecutor = ThreadExecutor()

final class SentFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var value: Bool { flag.withLock { $0 } }
}

func post(_ path: String, length: Int, _ extra: String = "") -> String {
    "POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: \(length)\r\n\(extra)\r\n"
}

@Suite("Streamed request bodies over real sockets")
struct BodyStreamTests {
    static let limit = 65_536

    /// The most one delivery carries: a read (`epoll_read_bytes` on epoll, one receive buffer
    /// of `recv_buffer_bytes` on io_uring).
    static func oneRead(_ backend: IOBackendKind) -> Int {
        backend == .epoll ? IOConfiguration().epollReadBytes : IOConfiguration().recvBufferBytes
    }

    func server(_ backend: IOBackendKind, _ log: StreamLog, configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> ServerFixture {
        try ServerFixture(backend: backend, shards: 1, configure: {
            $0.httpBodyStreamBufferBytes = Self.limit
            $0.http.maxBodyBytes = 128 << 20
            configure(&$0)
        }, worker: { _ in StreamingWorker(log) })
    }

    @Test("64 MiB consumed part by part with a 64 KiB buffer: the body arrives whole, the server holds at most the limit plus one read", arguments: backends)
    func bigBodyBoundedMemory(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log)
        defer { server.stop() }
        let c = try server.client(timeoutMilliseconds: 60_000)
        let total = 64 << 20
        var piece = [UInt8](repeating: 0, count: 65_536)
        for i in piece.indices { piece[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 8) }
        var h: UInt32 = 2_166_136_261
        try c.send(post("/upload/big", length: total))
        for _ in 0..<(total / piece.count) {
            try c.send(piece)
            h = fnv(piece, h)
        }
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.bodyText == "n=\(total) h=\(h)")
        let entry = try #require(log["big"])
        #expect(entry.parts > 1)
        // The limit plus one delivery.
        #expect(entry.peakBufferedBytes <= Self.limit + Self.oneRead(backend), "peak \(entry.peakBufferedBytes)")
        #expect(entry.peakBufferedBytes > 0)
        #expect(server.metric("switchboard_http_body_streams_total") == 1)
        // The connection is still good for the next request.
        try c.send(get("/n/next"))
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("next").utf8))
    }

    @Test("a slow consumer stalls the socket: the server stops reading at the limit, paused time is not a request timeout, the body completes when it reads", arguments: backends)
    func slowConsumerStalls(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log) { $0.io.requestTimeoutMilliseconds = 300 }
        defer { server.stop() }
        let c = try server.client()
        let total = 8 << 20
        let body = [UInt8](repeating: 0x61, count: total)
        let sent = SentFlag()
        let head = post("/upload/gated", length: total)
        let spawned = OSThread.spawn(name: "sender") {
            try? c.send(head)
            try? c.send(body)
            sent.set()
        }
        guard let sender = spawned else {
            Issue.record("no sender thread")
            return
        }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { server.metric("switchboard_http_body_stream_pauses_total") >= 1 })
        // Paused: kernel buffers fill and the client's send blocks; the shard takes nothing
        // more than the limit plus the kernel's in-flight receives, for longer than the
        // 300 ms request timeout (paused time does not count).
        let receivedAtPause = server.metric("switchboard_bytes_received_total")
        #expect(!waitUntil(timeoutMilliseconds: 700) {
            sent.value || server.metric("switchboard_bytes_received_total") > receivedAtPause + (4 << 20)
        })
        #expect(server.metric("switchboard_http_body_stream_buffered_bytes") <= Self.limit + Self.oneRead(backend))
        #expect(server.metric("switchboard_http_request_timeout_total") == 0)
        log.open()
        let r = try c.readResponse()
        #expect(r.bodyText == "n=\(total) h=\(fnv(body))")
        #expect(waitUntil { sent.value })
        sender.join()
        #expect(try #require(log["gated"]).peakBufferedBytes <= Self.limit + Self.oneRead(backend))
    }

    @Test("a chunked body past max_body_bytes: 413 in the request's place, the stream ends with tooLarge, the connection closes", arguments: backends)
    func overLimit(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log) { $0.http.maxBodyBytes = 1 << 20 }
        defer { server.stop() }
        let c = try server.client()
        let chunk = String(repeating: "z", count: 0x40000)
        var request = "POST /upload/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _ in 0..<5 { request += "40000\r\n\(chunk)\r\n" }  // 1.25 MiB
        try? c.send(request)
        let r = try c.readResponse()
        #expect(r.status == 413)
        #expect(r.header("Connection") == "close")
        #expect(waitUntil { log["chunked"]?.error == .tooLarge })
        #expect(server.metric("switchboard_http_body_too_large_total") == 1)
        #expect(server.metric("switchboard_http_body_stream_errors_total") == 1)
        // A declared length over the limit is refused before the handler runs.
        let d = try server.client()
        try d.send(post("/upload/declared", length: (1 << 20) + 1))
        #expect(try d.readResponse().status == 413)
        #expect(log["declared"] == nil)
        #expect(server.metric("switchboard_http_body_streams_total") == 1)
    }

    @Test("the client leaves mid-body: the stream ends with clientGone, nothing leaks", arguments: backends)
    func clientVanishes(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log)
        defer { server.stop() }
        do {
            let c = try server.client()
            try c.send(post("/upload/gone", length: 1 << 20))
            try c.send([UInt8](repeating: 1, count: 100_000))
            #expect(waitUntil { (log["gone"]?.bytes ?? 0) == 100_000 })
        }
        #expect(waitUntil { log["gone"]?.error == .clientGone })
        #expect(server.waitForNoConnections())
        #expect(server.metric("switchboard_http_deferred_abandoned_total") == 1)
        #expect(server.metric("switchboard_http_body_stream_buffered_bytes") == 0 || waitUntil {
            server.metric("switchboard_http_body_stream_buffered_bytes") == 0 })
    }

    @Test("a stalled client: 408 after request_timeout_ms without body bytes, the stream ends with timedOut", arguments: backends)
    func stalledClientTimesOut(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log) { $0.io.requestTimeoutMilliseconds = 300 }
        defer { server.stop() }
        let c = try server.client()
        try c.send(post("/upload/stall", length: 1000) + String(repeating: "s", count: 10))
        let r = try c.readResponse()
        #expect(r.status == 408)
        #expect(waitUntil { log["stall"]?.error == .timedOut })
        #expect(server.metric("switchboard_http_request_timeout_total") == 1)
    }

    @Test("a streamed request answered before its body is read: the answer says Connection: close, the stream ends with answeredEarly", arguments: backends)
    func answeredEarly(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log)
        defer { server.stop() }
        let c = try server.client()
        try c.send(post("/upload/early", length: 1 << 20) + String(repeating: "e", count: 1000))
        let r = try c.readResponse()
        #expect(r.status == 401)
        #expect(r.header("Connection") == "close")
        #expect(waitUntil { log["early"]?.error == .answeredEarly })
        #expect(try c.readToEnd().isEmpty, "nothing after the answer; the server closes")
    }

    @Test("Expect: 100-continue on a streamed request: 100 first, then the body is streamed", arguments: backends)
    func expectContinue(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log)
        defer { server.stop() }
        let c = try server.client()
        try c.send(post("/upload/continue", length: 5, "Expect: 100-continue\r\n"))
        let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
        try c.fill(atLeast: interim.count)
        #expect(Array(c.buffered.prefix(interim.count)) == interim)
        c.removeBuffered(interim.count)
        try c.send("hello")
        #expect(try c.readResponse().raw == Array(expectedPlainBytes("n=5 h=\(fnv(Array("hello".utf8)))").utf8))
    }

    @Test("over TLS (curl, https): 16 MiB streamed with a 64 KiB buffer, whole and bounded", arguments: backends)
    func overTLS(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let log = StreamLog()
        let server = try server(backend, log) { $0.tls = files.configuration() }
        defer { server.stop() }
        var body = [UInt8](repeating: 0, count: 16 << 20)
        for i in body.indices { body[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 12) }
        let path = files.directory + "/upload.bin"
        guard let f = fopen(path, "w") else { throw TestClient.Failure.closed }
        let written = body.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
        #expect(written == body.count)
        let curl = try runTool("/usr/bin/curl", ["-sS", "--cacert", files.ca, "-H", "Expect:", "--data-binary", "@" + path,
                                                 "https://localhost:\(server.broker.tlsPort)/upload/tls"])
        #expect(curl.status == 0 && curl.output == "n=\(body.count) h=\(fnv(body))", "\(curl.output)")
        let entry = try #require(log["tls"])
        #expect(entry.parts > 1)
        // One delivery's plaintext: a read of ciphertext plus the rest of a record begun in the
        // read before (TLS records carry at most 16 KiB).
        #expect(entry.peakBufferedBytes <= Self.limit + Self.oneRead(backend) + 16_384, "peak \(entry.peakBufferedBytes)")
    }

    @Test("pipelined after streamed bodies (fixed and chunked): every response in order, exact bytes", arguments: backends)
    func pipelining(backend: IOBackendKind) throws {
        let log = StreamLog()
        let server = try server(backend, log)
        defer { server.stop() }
        let c = try server.client()
        let a = [UInt8](repeating: 0x41, count: 300_000)
        let chunks = ["hello ", "streamed ", "world"]
        var requests = Array(post("/upload/a", length: a.count).utf8) + a
        requests += Array(get("/n/after-a").utf8)
        requests += Array("POST /upload/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        for chunk in chunks { requests += Array("\(String(chunk.utf8.count, radix: 16))\r\n\(chunk)\r\n".utf8) }
        requests += Array("0\r\nTrailer: x\r\n\r\n".utf8)
        requests += Array(get("/n/end").utf8)
        try c.send(requests)
        let joined = Array(chunks.joined().utf8)
        for expected in ["n=\(a.count) h=\(fnv(a))", "after-a", "n=\(joined.count) h=\(fnv(joined))", "end"] {
            #expect(try c.readResponse().raw == Array(expectedPlainBytes(expected).utf8))
        }
        #expect(server.metric("switchboard_http_body_streams_total") == 2)
        #expect(server.metric("switchboard_http_body_stream_errors_total") == 0)
    }
}
