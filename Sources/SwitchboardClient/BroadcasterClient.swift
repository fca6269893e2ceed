import Foundation
import Synchronization
import SwitchboardWebSocket

/// One broadcast received on a subscribed channel.
public struct BroadcastMessage: Sendable, Equatable {
    public var id: String
    public var channel: String
    public var event: String
    public var payload: JSONValue
    /// RFC 3339 time the server accepted the publish.
    public var createTime: String
    /// Position in the channel's history (with `epoch`): what recovery resumes after.
    public var offset: Int?
    public var epoch: String?
}

/// Client SDK for the broadcaster protocol (JSON requests `{"id","method","params"}`, replies
/// `{"requestId","result"|"error"}`, notifications `{"method":"broadcast","params":…}`), on the
/// same task-driven WebSocket core as ``BrokerClient``.
///
/// The token comes from `tokenProvider`, called at every (re)connect and by ``refreshToken()``:
/// an application refreshes a token about to expire by calling `refreshToken()`, and a
/// reconnect never reuses a stale one. With `autoReconnect`, a dropped connection is reopened
/// with jittered exponential backoff, authenticated again, and every channel is subscribed
/// again `since` the last offset received on it, so no broadcast kept in the server's history
/// is lost or repeated. Broadcasts reach ``onBroadcast`` one at a time, in order.
///
/// ```swift
/// let client = BroadcasterClient(url: "ws://localhost:8080/broadcaster/websocket",
///                                tokenProvider: { try await fetchToken() })
/// client.onBroadcast = { message in print(message.channel, message.payload) }
/// try await client.connect()
/// try await client.subscribe("news")
/// ```
public final class BroadcasterClient: Sendable {
    private struct State: Sendable {
        var connection: ClientWebSocket?
        var nextId = 1
        var pending: [Int: CheckedContinuation<JSONValue, any Error>] = [:]
        /// Subscribed channels and the last position received on each.
        var positions: [String: (offset: Int, epoch: String)?] = [:]
        var userClosed = false
        var reconnectTask: Task<Void, Never>?
        var reconnectCount = 0
        /// Where broadcasts go: one per connect...disconnect session, across reconnects.
        var inbox: MessageInbox<BroadcastMessage>
        /// Someone consumes broadcasts (``broadcasts`` was read or ``onBroadcast`` set): until
        /// then they are dropped, as the callback-only client did, so that a client used for
        /// requests alone never fills the buffer and stalls its replies.
        var attached = false
        /// The task calling ``onBroadcast`` for each element of ``broadcasts``.
        var pump: Task<Void, Never>?
    }

    public let url: String
    public let options: BrokerClientOptions
    private let tokenProvider: @Sendable () async throws -> String
    private let state: Mutex<State>
    private let callbacks = Mutex<(@Sendable (BroadcastMessage) -> Void)?>(nil)

    /// `options.autoReconnect`, the delays, `requestTimeout`, `connectTimeout`, `maxMessageBytes`
    /// and `tlsCAFile` apply as for ``BrokerClient``.
    public init(url: String, options: BrokerClientOptions = .init(autoReconnect: true),
                tokenProvider: @escaping @Sendable () async throws -> String) {
        self.url = url
        self.options = options
        self.tokenProvider = tokenProvider
        state = Mutex(State(inbox: MessageInbox(capacity: options.eventCapacity, policy: options.eventOverflow)))
    }

    /// The broadcasts received, in order, through a bounded buffer (``BrokerClientOptions/eventCapacity``
    /// and ``BrokerClientOptions/eventOverflow``). The sequence spans reconnects and ends at
    /// ``disconnect()``; after a new ``connect()`` read this property again. One consumer: iterate
    /// it or set ``onBroadcast``, not both.
    public var broadcasts: BroadcastMessages {
        state.withLock { s in
            s.attached = true
            return BroadcastMessages(inbox: s.inbox)
        }
    }

    /// Broadcasts dropped so far under ``InboundOverflowPolicy/dropNewest`` (this session).
    public var droppedBroadcastCount: Int { state.withLock { $0.inbox.droppedCount } }

    /// Called for each broadcast, in order, one at a time: a task iterating ``broadcasts``.
    public var onBroadcast: (@Sendable (BroadcastMessage) -> Void)? {
        get { callbacks.withLock { $0 } }
        set {
            callbacks.withLock { $0 = newValue }
            if newValue != nil { startPump() }
        }
    }

    /// Starts the task behind ``onBroadcast`` for the current session, once.
    private func startPump() {
        state.withLock { s in
            guard s.pump == nil, !s.inbox.isFinished else { return }
            s.attached = true
            s.pump = s.inbox.pump(to: { [weak self] in self?.callbacks.withLock { $0 } })
        }
    }

    /// How many times the client reconnected (and recovered its subscriptions).
    public var reconnectCount: Int { state.withLock { $0.reconnectCount } }

    /// Opens the connection and authenticates with a token from `tokenProvider`.
    public func connect() async throws {
        let restartPump = state.withLock { s -> Bool in
            s.userClosed = false
            guard s.inbox.isFinished else { return false }
            // A new session after disconnect(): a new sequence (the old one ended).
            s.inbox = MessageInbox(capacity: options.eventCapacity, policy: options.eventOverflow)
            s.pump = nil
            return true
        }
        if restartPump && onBroadcast != nil { startPump() }
        try await establish()
    }

    /// Subscribes to `channel` (`subscribe` scope and the channel in the token's
    /// `authorizedChannels`). Resubscribed automatically after a reconnect.
    public func subscribe(_ channel: String) async throws {
        let since = state.withLock { $0.positions[channel] ?? nil }
        _ = try await request("subscribe", Self.subscribeParams(channel, since))
        state.withLock { s in if s.positions[channel] == nil { s.positions[channel] = .some(nil) } }
    }

    /// Stops receiving `channel`.
    public func unsubscribe(_ channel: String) async throws {
        state.withLock { _ = $0.positions.removeValue(forKey: channel) }
        _ = try await request("unsubscribe", ["channel": .string(channel)])
    }

    /// Publishes over the WebSocket (`publish` scope).
    public func publish(channel: String, event: String, payload: JSONValue) async throws {
        _ = try await request("publish", ["channel": .string(channel), "event": .string(event), "payload": payload])
    }

    /// Authenticates again on the open connection with a fresh token from `tokenProvider`
    /// (before the current one expires).
    public func refreshToken() async throws {
        _ = try await request("auth", ["token": .string(try await tokenProvider())])
    }

    /// Closes the connection and stops reconnecting; pending requests fail with `.disconnected`.
    public func disconnect() async {
        let (connection, task, pending, inbox) = state.withLock { s in
            s.userClosed = true
            defer { s.connection = nil; s.reconnectTask = nil; s.pending = [:] }
            return (s.connection, s.reconnectTask, s.pending, s.inbox)
        }
        task?.cancel()
        inbox.finish()  // broadcasts buffered so far are still delivered, then the sequence ends
        for continuation in pending.values { continuation.resume(throwing: BrokerClientError.disconnected) }
        await connection?.close(timeout: options.closeTimeout)
    }

    /// Drops the current connection without a close handshake, as a network failure would
    /// (tests exercise recovery with it).
    func dropConnection() {
        state.withLock { $0.connection }?.abort()
    }

    // MARK: Connection

    private func establish() async throws {
        let target = try WebSocketURL.client(url)
        let connection = try await ClientWebSocket.open(url: target, options: options, adopt: { connection in
            state.withLock { s in
                if !s.userClosed { s.connection = connection }
                return !s.userClosed
            }
        }, handler: { [self] connection, event in await handle(event, from: connection) })
        do {
            _ = try await request("auth", ["token": .string(try await tokenProvider())], on: connection)
            // Recovery: every channel again, after the last offset received on it.
            let channels = state.withLock { $0.positions }
            for (channel, since) in channels {
                _ = try await request("subscribe", Self.subscribeParams(channel, since), on: connection)
            }
        } catch {
            connection.abort()
            throw error
        }
    }

    private static func subscribeParams(_ channel: String, _ since: (offset: Int, epoch: String)?) -> [String: JSONValue] {
        var params: [String: JSONValue] = ["channel": .string(channel)]
        if let since { params["since"] = .object(["offset": .number(Double(since.offset)), "epoch": .string(since.epoch)]) }
        return params
    }

    private func connectionEnded(_ connection: ClientWebSocket) {
        let (pending, reconnect) = state.withLock { s -> ([CheckedContinuation<JSONValue, any Error>], Bool) in
            guard s.connection === connection else { return ([], false) }
            s.connection = nil
            defer { s.pending = [:] }
            return (Array(s.pending.values), options.autoReconnect && !s.userClosed)
        }
        for continuation in pending { continuation.resume(throwing: BrokerClientError.disconnected) }
        guard reconnect else { return }
        let task = Task { [self] in
            var attempt = 0
            while !Task.isCancelled && !state.withLock({ $0.userClosed }) {
                try? await Task.sleep(for: options.jitteredReconnectDelay(attempt: attempt))
                attempt += 1
                if Task.isCancelled { return }
                do {
                    try await establish()
                    state.withLock { $0.reconnectCount += 1 }
                    return
                } catch {
                    continue
                }
            }
        }
        state.withLock { $0.reconnectTask = task }
    }

    // MARK: Requests

    private func request(_ method: String, _ params: [String: JSONValue], on explicit: ClientWebSocket? = nil) async throws -> JSONValue {
        let (connection, id) = try state.withLock { (s: inout State) throws(BrokerClientError) -> (ClientWebSocket, Int) in
            guard let connection = explicit ?? s.connection, explicit == nil || s.connection === explicit else {
                throw .notConnected
            }
            defer { s.nextId += 1 }
            return (connection, s.nextId)
        }
        let text = try JSONValue.object(["id": .number(Double(id)), "method": .string(method), "params": .object(params)]).jsonString()
        let timeout = options.requestTimeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                state.withLock { $0.pending[id] = continuation }
                Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    self?.complete(id, .failure(BrokerClientError.timeout))
                }
                do { try connection.sendText(text) } catch { complete(id, .failure(error)) }
            }
        } onCancel: {
            self.complete(id, .failure(CancellationError()))
        }
    }

    private func complete(_ id: Int, _ result: Result<JSONValue, any Error>) {
        state.withLock { $0.pending.removeValue(forKey: id) }?.resume(with: result)
    }

    // MARK: Incoming

    private func handle(_ event: ClientWebSocket.Event, from connection: ClientWebSocket) async {
        switch event {
        case .text(let text):
            guard let message = (try? JSONValue(jsonString: text))?.objectValue else { return }
            if let id = message["requestId"]?.intValue {
                if let error = message["error"]?.objectValue {
                    let code = error["code"]?.stringValue ?? error["code"].map { "\($0)" } ?? ""
                    complete(id, .failure(BrokerClientError.failed("\(code): \(error["message"]?.stringValue ?? "")")))
                } else {
                    complete(id, .success(message["result"] ?? .null))
                }
            } else if message["method"]?.stringValue == "broadcast", let params = message["params"]?.objectValue {
                let broadcast = BroadcastMessage(
                    id: params["id"]?.stringValue ?? "", channel: params["channel"]?.stringValue ?? "",
                    event: params["event"]?.stringValue ?? "", payload: params["payload"] ?? .null,
                    createTime: params["createTime"]?.stringValue ?? "", offset: params["offset"]?.intValue,
                    epoch: params["epoch"]?.stringValue)
                if let offset = broadcast.offset, let epoch = broadcast.epoch {
                    state.withLock { s in if s.positions[broadcast.channel] != nil { s.positions[broadcast.channel] = (offset, epoch) } }
                }
                let (attached, inbox) = state.withLock { ($0.attached, $0.inbox) }
                // suspendReading: a full buffer holds this connection's reading up here.
                if attached { await inbox.push(broadcast) }
            }
        case .binary:
            break
        case .closed:
            connectionEnded(connection)
        }
    }

    // MARK: REST

    /// Publishes through the broadcaster's REST endpoint (`POST {restURL}/publish`, `Authorization:
    /// Bearer apiKey`, http:// or https://). Throws `.failed` with the status and body on anything
    /// but 200.
    public static func publish(restURL: String, apiKey: String, channel: String, event: String,
                               payload: JSONValue, options: BrokerClientOptions = .init()) async throws {
        let lower = restURL.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw BrokerClientError.invalidURL("expected an http:// or https:// URL: \(restURL)")
        }
        // The same authority/path grammar as ws:// and wss://.
        var target = try WebSocketURL.client((lower.hasPrefix("https") ? "wss" : "ws") + restURL.drop { $0 != ":" })
        target.resource = (target.resource.hasSuffix("/") ? String(target.resource.dropLast()) : target.resource) + "/publish"
        let body = try JSONValue.object(["channel": .string(channel), "event": .string(event), "payload": payload]).jsonString()
        let head = "POST \(target.resource) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nAuthorization: Bearer \(apiKey)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let endpoint = target
        let response = try await withTimeout(options.requestTimeout) {
            let transport = try await ClientTransport.connect(endpoint, caFile: options.tlsCAFile)
            defer { transport.release() }
            return try await transport.exchange(Array((head + body).utf8))
        }
        let text = String(decoding: response, as: UTF8.self)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.map(String.init) ?? ""
        guard status == "200" else {
            throw BrokerClientError.failed("REST publish answered \(text.prefix { $0 != "\r" }): \(text.components(separatedBy: "\r\n\r\n").dropFirst().joined())")
        }
    }
}

extension ClientTransport {
    /// Writes `request`, then reads until the peer closes (a `Connection: close` exchange).
    func exchange(_ request: [UInt8]) async throws -> [UInt8] {
        var offset = 0
        while offset < request.count {
            switch request.withUnsafeBytes({ write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }) {
            case .bytes(let count): offset += count
            case .wait(let interest): try await ClientReactor.shared.wait(fd, for: interest)
            case .closed: throw BrokerClientError.disconnected
            case .failed(let why): throw BrokerClientError.connectionFailed(why)
            }
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            switch chunk.withUnsafeMutableBytes({ read(into: $0) }) {
            case .bytes(let count): response.append(contentsOf: chunk[0..<count])
            case .wait(let interest):
                if !hasBufferedInput { try await ClientReactor.shared.wait(fd, for: interest) }
            case .closed: return response
            case .failed(let why): throw BrokerClientError.connectionFailed(why)
            }
        }
    }
}
