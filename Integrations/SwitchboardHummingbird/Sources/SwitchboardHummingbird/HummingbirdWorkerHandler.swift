import HTTPTypes
import Hummingbird
import Logging
import Switchboard

/// The one-port adapter: a ``WorkerHandler`` that serves a Hummingbird responder (usually a
/// `Router`'s) for plain HTTP requests and hands WebSocket traffic to a Switchboard handler.
///
/// Thread rules: every `WorkerHandler` method runs on this handler's shard, which must never
/// block or await. An HTTP request is therefore answered on the deferred path: the shard
/// takes a ``ResponseSlot`` and returns `.deferred(slot)` at once; a task runs the responder
/// (which may await anything) and answers through `slot.respond(_:)` from wherever it ends.
/// Pipelined requests still leave in request order (the broker holds answers that come early);
/// a responder slower than `deferredResponseTimeoutMilliseconds` is answered 504 in its place.
///
/// Request bodies over `streamRequestBodiesOverBytes` (and chunked ones, whose length is not
/// known) are streamed: the route runs once the head is in and reads the body as it arrives
/// (`for try await buffer in request.body`), with the shard's backpressure
/// (`BrokerConfiguration.httpBodyStreamBufferBytes`). Smaller ones come whole, in one buffer.
public final class HummingbirdWorkerHandler<Responder: HTTPResponder>: WorkerHandler
where Responder.Context: InitializableFromSource<SwitchboardRequestContextSource> {
    let context: ShardContext
    let responder: Responder
    let maxResponseBodyBytes: Int
    let streamRequestBodiesOverBytes: Int?
    let webSocket: WorkerHandler?
    let logger: Logger

    /// - Parameters:
    ///   - webSocket: this shard's handler for upgrades, messages and closes on the broker's
    ///     WebSocket paths; nil refuses every upgrade with 404.
    ///   - maxResponseBodyBytes: a response body past this is replaced by a 500 (the shard
    ///     holds a deferred answer whole before writing it).
    ///   - streamRequestBodiesOverBytes: request bodies declared larger than this, and chunked
    ///     ones, reach the route as a stream; nil buffers every body whole.
    public init(context: ShardContext, responder: Responder, maxResponseBodyBytes: Int,
                streamRequestBodiesOverBytes: Int? = 65_536, webSocket: WorkerHandler?) {
        precondition(maxResponseBodyBytes >= 0, "maxResponseBodyBytes must be >= 0")
        precondition((streamRequestBodiesOverBytes ?? 0) >= 0, "streamRequestBodiesOverBytes must be >= 0")
        self.context = context
        self.responder = responder
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.streamRequestBodiesOverBytes = streamRequestBodiesOverBytes
        self.webSocket = webSocket
        self.logger = context.logger
    }

    public func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery {
        guard let threshold = streamRequestBodiesOverBytes else { return .buffered }
        // No Content-Length: a chunked body, of unknown size.
        guard let length = head.headerFields[.contentLength].flatMap({ Int($0) }) else { return .streamed }
        return length > threshold ? .streamed : .buffered
    }

    public func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        let slot = context.deferResponse()
        let hbRequest = HTTPTypesBridge.request(from: request)
        // Hummingbird's `RequestContext.id` reads this key (and requires it).
        var requestLogger = logger
        requestLogger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
        let source = SwitchboardRequestContextSource(logger: requestLogger, broker: context.broker, connection: slot.connection)
        let answer = DeferredAnswer(responder: responder, request: hbRequest, source: source,
                                    maxResponseBodyBytes: maxResponseBodyBytes, slot: slot)
        Task { await answer.run() }
        return .deferred(slot)
    }

    // MARK: - WebSocket: the Switchboard handler's

    public func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        guard let webSocket else { return .reject(WorkerResponse(status: .notFound)) }
        return webSocket.handleUpgrade(request, socketId: socketId)
    }

    /// Forwards the view, so the WebSocket handler gets the message through whichever method it
    /// implements (its view method's default makes the value for the other).
    public func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        webSocket?.handleSocketMessage(message, socketId: socketId, token: token)
    }

    /// A message given as a value (the broker calls the view method): forwarded as a view of it.
    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        handleSocketMessage(SocketMessageView(message), socketId: socketId, token: token)
    }

    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        webSocket?.handleSocketClose(socketId: socketId, token: token)
    }
}

/// One request's trip through the responder, off the shard: everything it needs, Sendable.
struct DeferredAnswer<Responder: HTTPResponder>: Sendable
where Responder.Context: InitializableFromSource<SwitchboardRequestContextSource> {
    let responder: Responder
    let request: Request
    let source: SwitchboardRequestContextSource
    let maxResponseBodyBytes: Int
    let slot: ResponseSlot

    func run() async {
        let response = await respond()
        // `.refused` means the shard is gone or its inbox is full: the client then gets the
        // broker's 504 (or nothing, if it left); nothing else can be done from here.
        let enqueued = slot.respond(response)
        if !enqueued.isQueued {
            source.logger.debug("deferred answer refused", metadata: ["enqueued": "\(enqueued)"])
        }
    }

    /// Runs the responder and turns whatever it does into one response, as Hummingbird's own
    /// server does: its `HTTPResponseError`s were already answered by the router; anything else
    /// thrown is a 500 with no body (details go to the log, never to the client).
    func respond() async -> WorkerResponse {
        do {
            let response = try await responder.respond(to: request, context: Responder.Context(source: source))
            return try await HTTPTypesBridge.response(from: response, maxBodyBytes: maxResponseBodyBytes)
        } catch is HTTPTypesBridge.ResponseTooLarge {
            source.logger.error("response body larger than maxResponseBodyBytes (\(maxResponseBodyBytes)): answered 500")
            return WorkerResponse(status: .internalServerError)
        } catch {
            source.logger.debug("unrecognised error: answered 500", metadata: ["error.type": "\(error)"])
            return WorkerResponse(status: .internalServerError)
        }
    }
}
