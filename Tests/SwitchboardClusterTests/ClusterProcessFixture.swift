import CJWTTestSupport
import Foundation  // JSONSerialization: the tests read the nodes' JSON independently of SwitchboardJSON
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

// The fixture of the process-level protocol tests (`ClusterProcessProtocolTests.swift`,
// `ClusterGracefulLeaveTests.swift`): N processes of one server executable over one
// redis-server, all started here on ephemeral ports and stopped (SIGKILL, waited for) at the
// end, whatever the test did. Every wait is for an event, bounded by a generous deadline:
// the machine may be loaded.

/// One cluster of server processes and its Redis.
final class ProcessCluster {
    let redis: RedisServer
    let executable: String
    private(set) var nodes: [NodeProcess] = []
    private let common: [String]

    /// Node ids 1...`count`, backends alternating io_uring / epoll / io_uring, `shards` each.
    /// `settings` are extra `--set key=value` for every node.
    init(_ executable: String, count: Int = 3, shards: Int = 2, settings: [String] = []) throws {
        self.executable = executable
        redis = try RedisServer()
        common = settings
        do {
            for id in 1...count {
                nodes.append(try NodeProcess(executable, arguments(id: id, shards: shards, backend: id % 2 == 0 ? "epoll" : "uring")))
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Starts node `id` again (a new process, so a new incarnation) in place of the old one,
    /// which must have exited.
    func restart(_ id: Int, shards: Int = 2) throws {
        precondition(!nodes[id - 1].process.isRunning, "stop the node first")
        nodes[id - 1] = try NodeProcess(executable, arguments(id: id, shards: shards, backend: id % 2 == 0 ? "epoll" : "uring"))
    }

    private func arguments(id: Int, shards: Int, backend: String) -> [String] {
        var arguments = [
            "--host", "127.0.0.1", "--port", "0", "--shards", String(shards), "--io-backend", backend,
            "--set", "cluster_engine=redis", "--set", "cluster_redis_url=redis://127.0.0.1:\(redis.port)",
            "--set", "cluster_node_id=\(id)", "--set", "tick_ms=10",
            "--set", "cluster_redis_backoff_ms=20", "--set", "cluster_redis_max_backoff_ms=200",
        ]
        for setting in common { arguments += ["--set", setting] }
        return arguments
    }

    /// Everything stopped: the nodes (SIGKILL unless they exited), then Redis.
    func stop() {
        for node in nodes { node.stop() }
        redis.stop()
    }

    /// Waits until every node that runs sees `members` live members and holds its inbox.
    func ready(members: Int? = nil) -> Bool {
        let expected = members ?? nodes.count
        guard let probe = try? RedisProbe(port: redis.port) else { return false }
        return waitUntil(timeoutMilliseconds: 30_000) {
            nodes.allSatisfy { (try? $0.metric("switchboard_cluster_members")) == expected }
                && (1...nodes.count).allSatisfy { (try? probe.subscriberCount("switchboard:node:\($0)")) == 1 }
        }
    }
}

/// The text of a JSON message without its `"id":N` member (the only field a test cannot
/// know: a per-node counter), so the rest is compared byte for byte.
func withoutMessageID(_ text: String) -> String {
    guard let range = text.range(of: #","id":"#) else { return text }
    let digits = text[range.upperBound...].prefix { $0.isNumber }
    return String(text[..<range.lowerBound]) + String(text[digits.endIndex...])
}

/// Whether a frame (or part of one) is readable on the client's socket right now.
func readableNow(_ client: TestClient) -> Bool {
    if !client.buffered.isEmpty { return true }
    var pfd = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
    return poll(&pfd, 1, 0) == 1
}

/// One JSON object from a text frame (pings and pongs skipped).
func readJSONObject(_ client: TestClient, sourceLocation: SourceLocation = #_sourceLocation) throws -> (text: String, object: [String: Any]) {
    while true {
        let frame = try client.readFrame()
        if frame.opcode == 9 || frame.opcode == 10 { continue }
        #expect(frame.opcode == 1, "a text frame, got \(frame) \(frame.text)", sourceLocation: sourceLocation)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(frame.text.utf8)) as? [String: Any], "\(frame.text)",
                                  sourceLocation: sourceLocation)
        return (frame.text, object)
    }
}

/// An HS256 JWT for the broadcaster (claims as the reference's tokens carry them).
func broadcasterToken(secret: String, sub: String, channels: [String]) -> String {
    func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    let now = Int(Date().timeIntervalSince1970)
    let channelsJSON = "[" + channels.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    let claims = #"{"sub":"\#(sub)","aud":"broadcaster","exp":\#(now + 3600),"iat":\#(now),"authorizedChannels":\#(channelsJSON),"scope":["subscribe"]}"#
    let input = base64URL(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + base64URL(Array(claims.utf8))
    var mac = [UInt8](repeating: 0, count: 64)
    let key = Array(secret.utf8)
    let inputBytes = Array(input.utf8)
    let n = sbt_hmac("SHA256", key, key.count, inputBytes, inputBytes.count, &mac)
    precondition(n == 32, "HMAC-SHA256 is 32 bytes")
    return input + "." + base64URL(Array(mac[0..<32]))
}

/// A raw amqp-swarm RPC client (one WebSocket, JSON text): answers the node's pings itself.
final class RawRPCClient {
    let socket: TestClient
    private var next = 1

    /// Connects as node `id` and waits for `init`.
    init(port: Int, id: String) throws {
        socket = try TestClient(port: port, receiveTimeoutMilliseconds: 30_000)
        #expect(try socket.upgrade(path: "/rpc?id=\(id)").status == 101)
        let first = try read()
        #expect(first.text == #"{"type":"init"}"#)
    }

    /// The next message that is not a ping (pings are answered with their pong).
    func read() throws -> (text: String, object: [String: Any]) {
        while true {
            let message = try readJSONObject(socket)
            if message.object["type"] as? String == "ping" {
                let correlation = try JSONSerialization.data(withJSONObject: [message.object["correlationId"] ?? NSNull()], options: [.fragmentsAllowed])
                let id = String(decoding: correlation, as: UTF8.self).dropFirst().dropLast()
                try socket.sendText(#"{"type":"pong","correlationId":\#(id)}"#)
                continue
            }
            return message
        }
    }

    /// Sends a request (`args`: JSON text of the array) and returns its correlation id.
    func request(_ name: String, _ args: String) throws -> String {
        let correlation = "c\(next)"
        next += 1
        try socket.sendText(#"{"type":"request","name":"\#(name)","args":\#(args),"correlationId":"\#(correlation)"}"#)
        return correlation
    }
}
