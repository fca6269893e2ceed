import Foundation
import Synchronization
import SwitchboardWebSocket

/// Why an `RPCClient.send` did not produce a result.
public enum RPCClientError: Error, Equatable, Sendable {
    /// The node's handler threw (`errorType` `endpoint`).
    case endpoint(message: String, data: JSONValue)
    /// No answer within the timeout (local), or the node reported its own timeout.
    case timeout
    /// The node has no handler for the name.
    case unhandled(name: String)
    /// Another `protocol` error from the node (e.g. it could not read the request).
    case protocolError(subtype: String?, message: String, data: JSONValue)
    /// The connection dropped while the request was on the wire.
    case disconnected
    /// The offline queue or the pending table is full.
    case overloaded
    /// The client was closed (by `close()` or the server's `{"type":"close"}`).
    case closed
}

/// Settings of an `RPCClient`; every bound has a default.
public struct RPCClientOptions: Sendable {
    /// Per-request timeout (the reference client uses 1 s).
    public var requestTimeout: Duration = .seconds(5)
    /// TCP connect + handshake, and again the wait for `init` after it (then the connection is
    /// dropped and retried).
    public var connectTimeout: Duration = .seconds(5)
    /// The client pings its node this often; a pong later than `pingTimeout` drops the
    /// connection and reconnects (as the reference client does, with 1 s / 1 s).
    public var pingInterval: Duration = .seconds(1)
    public var pingTimeout: Duration = .seconds(3)
    /// Reconnect after an unexpected drop: delays double from `reconnectBaseDelay` up to
    /// `reconnectMaxDelay`, each with up to 50% random jitter.
    public var reconnect = true
    public var reconnectBaseDelay: Duration = .milliseconds(100)
    public var reconnectMaxDelay: Duration = .seconds(5)
    /// Requests made while not connected wait here, sent in FIFO order after the next `init`
    /// (the reference flushes LIFO); beyond this bound `send` fails with `overloaded`.
    public var maxQueuedRequests = 1024
    /// Requests waiting for an answer; beyond it `send` fails with `overloaded`.
    public var maxPendingRequests = 16_384
    public var maxMessageBytes = 16 << 20

    public init() {}
}

/// A client of Switchboard's RPC protocol (amqp-swarm's wire format): requests to its node,
/// handlers for requests from its node, pings, reconnects.
///
/// ```swift
/// let client = RPCClient(url: "ws://127.0.0.1:8080/")
/// client.on("whoami") { _ in "swift-client" }
/// client.start()
/// let r = try await client.send("echo", [1, "two"])   // [1,"two"]
/// ```
public final class RPCClient: Sendable {
    public typealias Handler = @Sendable ([JSONValue]) async throws -> JSONValue

    public let url: String
    public let options: RPCClientOptions

    private enum Phase { case idle, connecting, open, ready, closed }
    private struct Pending {
        let deadline: ContinuousClock.Instant
        let completion: @Sendable (Result<JSONValue, RPCClientError>) -> Void
        /// Sleeps until `deadline`, then fails the request with `.timeout`; cancelled when the
        /// request completes first.
        let timer: Task<Void, Never>
    }
    private struct State {
        var phase: Phase = .idle
        var connection: ClientWebSocket?
        var pending: [String: Pending] = [:]
        /// Requests made while not ready: (correlation id, text), FIFO.
        var queue: [(id: String, text: String)] = []
        var handlers: [String: Handler] = [:]
        var readyWaiters: [CheckedContinuation<Result<Void, RPCClientError>, Never>] = []
        var nextId = 0
        var failedAttempts = 0
        var pings: [String: ContinuousClock.Instant] = [:]
        var nextPing: ContinuousClock.Instant = .now
        /// When the current connection opened (for the wait for `init`).
        var openedAt: ContinuousClock.Instant = .now
    }
    private let state = Mutex(State())

    public init(url: String, options: RPCClientOptions = RPCClientOptions()) {
        self.url = url
        self.options = options
    }

    /// Handles requests from the node named `name`. Throw `RPCClientError.endpoint` to answer
    /// with a message and data; any other error answers `endpoint` with its description.
    public func on(_ name: String, _ handler: @escaping Handler) {
        state.withLock { $0.handlers[name] = handler }
    }

    /// Connects in the background (and reconnects per options). Idempotent.
    public func start() {
        let go = state.withLock { s -> Bool in
            guard s.phase == .idle else { return false }
            s.phase = .connecting
            return true
        }
        guard go else { return }
        Task { await self.connectLoop() }
        Task { await self.timerLoop() }
    }

    /// Waits until the node's `init` arrived (starting the client if needed).
    public func waitUntilReady() async throws(RPCClientError) {
        start()
        let r: Result<Void, RPCClientError> = await withCheckedContinuation { c in
            let check = state.withLock { s -> Result<Void, RPCClientError>? in
                switch s.phase {
                case .ready: return .success(())
                case .closed: return .failure(.closed)
                default:
                    s.readyWaiters.append(c)
                    return nil
                }
            }
            if let check { c.resume(returning: check) }
        }
        try r.get()
    }

    /// Sends a request to the node and waits for its result.
    ///
    /// Starts the client if needed (`startIfNeeded`); while it is not ready the request waits
    /// in the FIFO offline queue.
    public func send(_ name: String, _ args: [JSONValue] = [], timeout: Duration? = nil,
                     startIfNeeded: Bool = true) async throws(RPCClientError) -> JSONValue {
        if startIfNeeded { start() }
        let argsText: String
        do { argsText = try JSONValue.array(args).jsonString() } catch { throw .protocolError(subtype: nil, message: "args are not JSON", data: nil) }
        let deadline = ContinuousClock.now + (timeout ?? options.requestTimeout)
        let result: Result<JSONValue, RPCClientError> = await withCheckedContinuation { c in
            let done: @Sendable (Result<JSONValue, RPCClientError>) -> Void = { c.resume(returning: $0) }
            let action = state.withLock { s -> (ClientWebSocket, String, String)?? in
                if s.phase == .closed { return .some(nil) }
                guard s.pending.count < options.maxPendingRequests else { return .some(nil) }
                s.nextId += 1
                let id = "c\(s.nextId)"
                let text = #"{"type":"request","name":"# + Self.quote(name) + #","args":"# + argsText + #","correlationId":""# + id + #""}"#
                if s.phase == .ready, let conn = s.connection {
                    s.pending[id] = Pending(deadline: deadline, completion: done, timer: timeoutTimer(id, deadline))
                    return .some((conn, id, text))
                }
                guard s.queue.count < options.maxQueuedRequests else { return .some(nil) }
                s.pending[id] = Pending(deadline: deadline, completion: done, timer: timeoutTimer(id, deadline))
                s.queue.append((id, text))
                return .none
            }
            switch action {
            case .none: break  // queued
            case .some(nil):
                let closed = state.withLock { $0.phase == .closed }
                done(.failure(closed ? .closed : .overloaded))
            case .some(let (conn, id, text)?):
                do { try conn.sendText(text) } catch { complete(id, .failure(.disconnected)) }
            }
        }
        return try result.get()
    }

    /// Requests waiting in the offline queue (diagnostics).
    public var queuedRequestCount: Int { state.withLock { $0.queue.count } }

    /// Closes for good: pending and queued requests fail with `closed`.
    public func close() async {
        let conn = state.withLock { s -> ClientWebSocket? in
            s.phase = .closed
            return s.connection
        }
        failAll(.closed, includingQueued: true)
        await conn?.close()
    }

    // MARK: - Connection

    private func connectLoop() async {
        guard let target = try? WebSocketURL.client(url) else {
            state.withLock { $0.phase = .closed }
            failAll(.closed, includingQueued: true)
            return
        }
        while state.withLock({ $0.phase }) == .connecting {
            do {
                let conn = try await Self.open(target, options)
                let keep = state.withLock { s -> Bool in
                    guard s.phase == .connecting else { return false }
                    s.phase = .open
                    s.connection = conn
                    s.pings = [:]
                    s.openedAt = .now
                    return true
                }
                guard keep else { conn.abort(); return }
                conn.start { [weak self] event in self?.handle(event, from: conn) }
                return
            } catch {
                let attempt = state.withLock { s -> Int in s.failedAttempts += 1; return s.failedAttempts }
                guard options.reconnect else {
                    state.withLock { $0.phase = .closed }
                    failAll(.disconnected, includingQueued: true)
                    return
                }
                try? await Task.sleep(for: backoff(attempt))
            }
        }
    }

    /// Exponential backoff with up to 50% jitter.
    private func backoff(_ attempt: Int) -> Duration {
        let base = options.reconnectBaseDelay * (1 << min(attempt - 1, 16))
        let capped = min(base, options.reconnectMaxDelay)
        return capped + capped * Double.random(in: 0..<0.5)
    }

    private static func open(_ url: WebSocketURL, _ options: RPCClientOptions) async throws -> ClientWebSocket {
        try await ClientWebSocket.open(url: url, timeout: options.connectTimeout, maxMessageBytes: options.maxMessageBytes)
    }

    private func handle(_ event: ClientWebSocket.Event, from conn: ClientWebSocket) {
        switch event {
        case .text(let text): receive(text, conn)
        case .binary(let bytes): receive(String(decoding: bytes, as: UTF8.self), conn)
        case .closed:
            let reconnect = state.withLock { s -> Bool in
                guard s.connection === conn else { return false }
                s.connection = nil
                guard s.phase != .closed else { return false }
                s.phase = options.reconnect ? .connecting : .closed
                return options.reconnect
            }
            // Requests already on the wire are lost with the connection; queued ones wait.
            failAll(.disconnected, includingQueued: !reconnect)
            if reconnect {
                Task {
                    try? await Task.sleep(for: backoff(1))
                    await connectLoop()
                }
            }
        }
    }

    private func receive(_ text: String, _ conn: ClientWebSocket) {
        guard let message = try? JSONValue(jsonString: text), let type = message["type"]?.stringValue else { return }
        let cid = message["correlationId"]
        switch type {
        case "init":
            // Flush the offline queue in FIFO order before going ready; requests made during the
            // flush queue behind it (the loop drains them too), so none overtakes an older one.
            while true {
                let batch = state.withLock { s -> [(id: String, text: String)]? in
                    guard !s.queue.isEmpty else {
                        s.phase = .ready
                        s.failedAttempts = 0
                        return nil
                    }
                    defer { s.queue = [] }
                    return s.queue
                }
                guard let batch else { break }
                for q in batch {
                    do { try conn.sendText(q.text) } catch { complete(q.id, .failure(.disconnected)) }
                }
            }
            let waiters = state.withLock { s in
                defer { s.readyWaiters = [] }
                return s.readyWaiters
            }
            for w in waiters { w.resume(returning: .success(())) }
        case "ping":
            if let cid, let idText = try? cid.jsonString() {
                try? conn.sendText(#"{"type":"pong","correlationId":"# + idText + "}")
            }
        case "pong":
            if let id = cid?.stringValue { _ = state.withLock { $0.pings.removeValue(forKey: id) } }
        case "response":
            if let id = cid?.stringValue { complete(id, .success(message["result"] ?? .null)) }
        case "error":
            if let id = cid?.stringValue { complete(id, .failure(Self.error(from: message))) }
        case "request":
            guard let cid, let idText = try? cid.jsonString(), let name = message["name"]?.stringValue else { return }
            let args = message["args"]?.arrayValue ?? []
            let handler = state.withLock { $0.handlers[name] }
            Task {
                let reply: String
                if let handler {
                    do {
                        let result = try await handler(args)
                        reply = #"{"type":"response","correlationId":"# + idText + #","result":"# + ((try? result.jsonString()) ?? "null") + "}"
                    } catch {
                        reply = Self.errorText(error, idText)
                    }
                } else {
                    reply = Self.errorText(RPCClientError.unhandled(name: name), idText)
                }
                try? conn.sendText(reply)
            }
        case "close":
            // The server says stop for good.
            state.withLock { $0.phase = .closed }
            failAll(.closed, includingQueued: true)
            Task { await conn.close() }
        default:
            break
        }
    }

    private func complete(_ id: String, _ result: Result<JSONValue, RPCClientError>) {
        guard let p = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        p.timer.cancel()
        p.completion(result)
    }

    /// The request's own timeout: one sleeping task, not a scan of every request on a timer.
    private func timeoutTimer(_ id: String, _ deadline: ContinuousClock.Instant) -> Task<Void, Never> {
        Task { [weak self] in
            guard (try? await Task.sleep(until: deadline)) != nil, let self else { return }
            state.withLock { $0.queue.removeAll { $0.id == id } }
            complete(id, .failure(.timeout))
        }
    }

    private func failAll(_ error: RPCClientError, includingQueued: Bool) {
        let victims = state.withLock { s -> [Pending] in
            let queuedIds = Set(s.queue.map(\.id))
            var out: [Pending] = []
            for (id, p) in s.pending where includingQueued || !queuedIds.contains(id) {
                out.append(p)
                s.pending[id] = nil
            }
            if includingQueued { s.queue = [] }
            return out
        }
        for v in victims {
            v.timer.cancel()
            v.completion(.failure(error))
        }
        if includingQueued {
            let waiters = state.withLock { s in defer { s.readyWaiters = [] }; return s.readyWaiters }
            for w in waiters { w.resume(returning: .failure(error)) }
        }
    }

    /// Pings, pong deadlines and the init deadline of a fresh connection, until closed. It
    /// sleeps until the earliest of them (at most `pingInterval`), not on a fixed tick; request
    /// timeouts are each request's own timer.
    private func timerLoop() async {
        var wake = ContinuousClock.now + options.pingInterval
        while true {
            try? await Task.sleep(until: wake)
            let now = ContinuousClock.now
            let (ping, drop, closed) = state.withLock { s -> ((ClientWebSocket, String)?, ClientWebSocket?, Bool) in
                var ping: (ClientWebSocket, String)? = nil
                var drop: ClientWebSocket? = nil
                if s.phase == .open, let conn = s.connection, now - s.openedAt > options.connectTimeout {
                    drop = conn  // no init in time: drop and reconnect
                } else if s.phase == .ready, let conn = s.connection {
                    if s.pings.values.contains(where: { $0 <= now }) {
                        drop = conn
                        s.pings = [:]
                    } else if s.nextPing <= now {
                        s.nextId += 1
                        let id = "p\(s.nextId)"
                        s.pings[id] = now + options.pingTimeout
                        s.nextPing = now + options.pingInterval
                        ping = (conn, id)
                    }
                }
                // The next moment something is due: a ping, a pong deadline, the init deadline.
                var next = s.nextPing
                if let earliest = s.pings.values.min() { next = min(next, earliest) }
                if s.phase == .open { next = min(next, s.openedAt + options.connectTimeout) }
                wake = max(min(next, now + options.pingInterval), now + .milliseconds(1))
                return (ping, drop, s.phase == .closed)
            }
            if let (conn, id) = ping { try? conn.sendText(#"{"type":"ping","correlationId":""# + id + #""}"#) }
            if let drop { drop.abort() }
            if closed { return }
        }
    }

    // MARK: - Encoding

    static func quote(_ s: String) -> String {
        (try? JSONValue.string(s).jsonString()) ?? "\"\""
    }

    static func error(from m: JSONValue) -> RPCClientError {
        let message = m["message"]?.stringValue ?? ""
        let data = m["data"] ?? .null
        if m["errorType"]?.stringValue == "endpoint" { return .endpoint(message: message, data: data) }
        switch m["errorSubtype"]?.stringValue {
        case "timeout"?: return .timeout
        case "unhandled"?: return .unhandled(name: data["requestName"]?.stringValue ?? "")
        case let other: return .protocolError(subtype: other, message: message, data: data)
        }
    }

    /// The wire error for a handler's thrown error, fields in the reference's order.
    static func errorText(_ error: any Error, _ idText: String) -> String {
        let (type, subtype, message, data): (String, String?, String, JSONValue)
        switch error as? RPCClientError {
        case .endpoint(let m, let d)?: (type, subtype, message, data) = ("endpoint", nil, m, d)
        case .timeout?: (type, subtype, message, data) = ("protocol", "timeout", "Request timed out", .null)
        case .unhandled(let n)?: (type, subtype, message, data) = ("protocol", "unhandled", "No handler found for request '\(n)'", ["requestName": .string(n)])
        case .protocolError(let s, let m, let d)?: (type, subtype, message, data) = ("protocol", s, m, d)
        default: (type, subtype, message, data) = ("endpoint", nil, String(describing: error), .null)
        }
        return #"{"errorType":""# + type + #"","errorSubtype":"# + (subtype.map(quote) ?? "null") + #","message":"# + quote(message)
            + #","data":"# + ((try? data.jsonString()) ?? "null") + #","type":"error","correlationId":"# + idText + "}"
    }
}
