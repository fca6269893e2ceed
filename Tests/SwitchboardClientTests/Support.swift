import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchboardClient
import SwitchboardWebSocket
import SwitchboardTestSupport

// MARK: - Small async helpers

/// Thread-safe recorder for values delivered to callbacks.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
    var count: Int { values.withLock { $0.count } }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
@discardableResult
func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Keeps every line the client logs (thread-safe), so a test can wait for a logged event.
final class RecordingLogger: BrokerClientLogger {
    private let recorded = Recorder<String>()
    func log(_ level: BrokerLogLevel, _ message: String) { recorded.append(message) }
    var lines: [String] { recorded.all }
}

/// Waits until everything the broker sent each client so far has reached the client's
/// callbacks, instead of sleeping and hoping: a request round trip (the broker's reply comes
/// after any notification it sent before it, and the reader queues callbacks in arrival
/// order), then a no-op queued behind every callback already on the client's serial queue.
func settled(_ clients: BrokerClient...) async throws {
    for client in clients {
        _ = try await client.listByRole("settled-barrier")
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            client.callbackQueue.async { done.resume() }
        }
    }
}

/// Runs `body` and returns the BrokerClientError it throws (nil if it did not throw one).
func brokerError(_ body: () async throws -> Void) async -> BrokerClientError? {
    do {
        try await body()
        return nil
    } catch let error as BrokerClientError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

// MARK: - Reference broker (Python websockets)

/// The reference broker (Tests/interop/reference_connection_broker.py) in a child process.
final class ReferenceBroker: @unchecked Sendable {
    static var script: String { RepositoryTools.interopScript("reference_connection_broker.py") }

    private var process: Process?
    private(set) var port: Int

    init(port: Int = 0) throws {
        self.port = port
        try start()
    }

    var url: String { "ws://127.0.0.1:\(port)/" }

    func start() throws {
        // A missing venv fails the test with how to create it (RepositoryTools), never skips.
        let python = try RepositoryTools.python()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.script, String(port)]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        self.process = process
        // First line of stdout: the bound port.
        let fd = out.fileHandleForReading.fileDescriptor
        var line: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(15)
        while !line.contains(10) {
            guard ContinuousClock.now < deadline else { stop(); throw Failure("reference broker did not report its port") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 { continue }
            var byte: UInt8 = 0
            let n = read(fd, &byte, 1)
            if n <= 0 { stop(); throw Failure("reference broker exited before reporting its port") }
            line.append(byte)
        }
        guard let bound = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            stop()
            throw Failure("bad port line")
        }
        port = bound
    }

    /// Kills the server abruptly (SIGKILL): every client connection drops without a close frame.
    func kill() {
        guard let process, process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    func stop() { kill() }

    deinit { stop() }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}

// MARK: - Raw WebSocket server (scripted misbehaviour)

struct RawFrame {
    var fin: Bool
    var opcode: UInt8
    var masked: Bool
    var mask: [UInt8]
    var payload: [UInt8]
    var text: String { String(decoding: payload, as: UTF8.self) }
    /// A close frame's status code (nil when its payload carries none).
    var closeCode: UInt16? { payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
}

/// One accepted connection on `RawServer`: blocking reads with a 5 s timeout.
final class RawPeer: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var requestHead = ""

    struct Closed: Error {}

    init(fd: Int32) {
        self.fd = fd
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    private func fill(_ count: Int) throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while buffer.count < count {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { throw Closed() }
            buffer += chunk[0..<n]
        }
    }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads the upgrade request and answers it. `accept` overrides the correct accept value.
    @discardableResult
    func handshake(accept: String? = nil, status: String = "101 Switching Protocols", extraHeaders: String = "") throws -> String {
        while true {
            if let r = findCRLFCRLF() {
                requestHead = String(decoding: buffer[0..<r], as: UTF8.self)
                buffer.removeFirst(r + 4)
                break
            }
            try fill(buffer.count + 1)
        }
        let key = requestHead.components(separatedBy: "\r\n")
            .first { $0.lowercased().hasPrefix("sec-websocket-key:") }
            .map { String($0.dropFirst("sec-websocket-key:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
        let acceptValue = accept ?? WebSocketHandshake.acceptValue(forKey: key)
        send(Array(("HTTP/1.1 \(status)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                    "Sec-WebSocket-Accept: \(acceptValue)\r\n\(extraHeaders)\r\n").utf8))
        return key
    }

    private func findCRLFCRLF() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Reads frames into `frames` until a close frame (recorded too) or the end of the
    /// connection: what the client sent, for a test to assert on.
    func recordFrames(into frames: Recorder<RawFrame>) {
        while let frame = try? readFrame() {
            frames.append(frame)
            if frame.opcode == 8 { break }
        }
    }

    func readFrame() throws -> RawFrame {
        try fill(2)
        let b0 = buffer[0], b1 = buffer[1]
        var length = Int(b1 & 0x7F)
        var header = 2
        if length == 126 {
            try fill(4)
            length = Int(buffer[2]) << 8 | Int(buffer[3])
            header = 4
        } else if length == 127 {
            try fill(10)
            length = 0
            for i in 2..<10 { length = length << 8 | Int(buffer[i]) }
            header = 10
        }
        let masked = b1 & 0x80 != 0
        var mask: [UInt8] = []
        if masked {
            try fill(header + 4)
            mask = Array(buffer[header..<(header + 4)])
            header += 4
        }
        try fill(header + length)
        var payload = Array(buffer[header..<(header + length)])
        if masked { for i in payload.indices { payload[i] ^= mask[i & 3] } }
        buffer.removeFirst(header + length)
        return RawFrame(fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, masked: masked, mask: mask, payload: payload)
    }

    static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true, masked: Bool = false) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let m: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            out.append(m | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out += [m | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(m | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        if masked {
            let mask: [UInt8] = [1, 2, 3, 4]
            out += mask
            for (i, b) in payload.enumerated() { out.append(b ^ mask[i & 3]) }
        } else {
            out += payload
        }
        return out
    }

    func sendFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true, masked: Bool = false) {
        send(Self.frame(opcode: opcode, payload: payload, fin: fin, masked: masked))
    }

    func sendText(_ text: String) { sendFrame(opcode: 1, payload: Array(text.utf8)) }

    func sendJSON(_ object: [String: Any]) {
        let data = try! JSONSerialization.data(withJSONObject: object)
        sendText(String(decoding: data, as: UTF8.self))
    }

    /// Next text message as a JSON object; answers pings; nil when the client closes (after
    /// echoing its close frame) or the connection ends.
    func readJSON() -> [String: Any]? {
        while true {
            guard let frame = try? readFrame() else { return nil }
            switch frame.opcode {
            case 1:
                return (try? JSONSerialization.jsonObject(with: Data(frame.payload))) as? [String: Any]
            case 8:
                sendFrame(opcode: 8, payload: Array(frame.payload.prefix(2)))
                return nil
            case 9:
                sendFrame(opcode: 10, payload: frame.payload)
            default:
                continue
            }
        }
    }

    func shutdown() { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
}

/// A TCP listener on 127.0.0.1 that hands each accepted connection to a script on its own thread.
/// Stops (and closes its socket and connections) when released.
final class RawServer: @unchecked Sendable {
    final class Shared: Sendable {
        let stopped = Mutex(false)
        let peers = Mutex<[RawPeer]>([])
    }

    let port: Int
    private let shared = Shared()

    init(script: @escaping @Sendable (RawPeer) throws -> Void) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                _ = bind(fd, sa, len)
                _ = getsockname(fd, sa, &len)
            }
        }
        listen(fd, 16)
        port = Int(UInt16(bigEndian: addr.sin_port))
        let shared = self.shared
        // The accept thread owns the listening socket and closes it when told to stop.
        Thread {
            while !shared.stopped.withLock({ $0 }) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 50) <= 0 { continue }
                let client = accept(fd, nil, nil)
                if client < 0 { continue }
                let peer = RawPeer(fd: client)
                shared.peers.withLock { $0.append(peer) }
                Thread { try? script(peer) }.start()
            }
            Glibc.close(fd)
        }.start()
    }

    var url: String { "ws://127.0.0.1:\(port)/" }

    func stop() {
        shared.stopped.withLock { $0 = true }
        for p in shared.peers.withLock({ $0 }) { p.shutdown() }
    }

    deinit { stop() }
}

/// A scripted broker: handshake, then `respond` for each JSON request until the client leaves.
func scriptedBroker(_ respond: @escaping @Sendable (RawPeer, [String: Any]) -> Void) -> RawServer {
    RawServer { peer in
        try peer.handshake()
        while let request = peer.readJSON() { respond(peer, request) }
    }
}

/// A scripted broker that answers `register` and then calls `respond` for everything else.
func registeringBroker(connectionId: String = "11111111-2222-3333-4444-555555555555",
                       _ respond: @escaping @Sendable (RawPeer, [String: Any]) -> Void = { _, _ in }) -> RawServer {
    scriptedBroker { peer, request in
        if request["type"] as? String == "register" {
            peer.sendJSON(["type": "registered", "id": 1, "replyTo": request["id"] ?? 0, "connectionId": connectionId])
        } else {
            respond(peer, request)
        }
    }
}
