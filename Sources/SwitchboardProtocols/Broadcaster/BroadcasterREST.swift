import Switchboard
import SwitchboardJSON
import SwitchboardJWT
import Synchronization

/// REST routes: `GET {base}/health`, `POST`/`OPTIONS {base}/publish`.
extension BroadcasterShardHandler {
    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        switch request.path {
        case options.healthPath:
            guard request.method == .get || request.method == .head else { return .response(methodNotAllowed("GET")) }
            return .response(.text("ok"))
        case options.publishPath:
            return publishRoute(request, context)
        default:
            return .notHandled
        }
    }

    private var corsFields: HTTPFields { RESTRenderer(corsAllowOrigin: options.corsAllowOrigin).corsFields }

    private func methodNotAllowed(_ allow: String) -> WorkerResponse {
        var r = WorkerResponse.text("method not allowed\n", status: .methodNotAllowed)
        r.headerFields[.allow] = allow
        return r
    }

    /// A plain-text error as Go's `http.Error` writes it (text, newline), with the CORS fields.
    private func textError(_ text: String, _ status: HTTPResponse.Status) -> WorkerResponse {
        var fields = corsFields
        fields[.contentType] = "text/plain; charset=utf-8"
        fields[.init("X-Content-Type-Options")!] = "nosniff"
        return WorkerResponse(status: status, headerFields: fields, body: text + "\n")
    }

    private func json(_ body: [UInt8], _ status: HTTPResponse.Status = .ok) -> WorkerResponse {
        RESTRenderer(corsAllowOrigin: options.corsAllowOrigin).json(body, status)
    }

    private func publishRoute(_ request: WorkerRequest, _ context: ShardContext) -> HTTPReply {
        if request.method == .options { return .response(WorkerResponse(status: .ok, headerFields: corsFields)) }
        guard request.method == .post else { return .response(methodNotAllowed("POST, OPTIONS")) }
        guard let authorization = request.headerFields[.authorization] else {
            metrics.restUnauthorized.increment()
            return .response(textError("missing authorization header", .unauthorized))
        }
        guard options.apiKeys.contains(APIKeySet.credential(fromAuthorization: Array(authorization.utf8))) else {
            metrics.restUnauthorized.increment()
            return .response(textError("invalid api key", .unauthorized))
        }
        guard let body = request.body.withUnsafeBufferPointer({
            BroadcasterRequestDecoder.decodePublishBody($0, maxJSONDepth: options.maxJSONDepth)
        }) else {
            metrics.restBadBody.increment()
            return .response(textError("invalid request body", .badRequest))
        }
        if body.batch && body.items.count > options.maxBatchMessages {
            metrics.restBadBody.increment()
            return .response(json(BroadcasterResponse.errorObject(BroadcasterError(.invalidArgument,
                "batch of \(body.items.count) messages is over the limit of \(options.maxBatchMessages)")), .badRequest))
        }
        // Check every item first; then submit the valid ones to their owners.
        var results = [Result<BroadcasterMessage, BroadcasterError>?](repeating: nil, count: body.items.count)
        var toSubmit: [(Int, BroadcasterPublish)] = []
        for (i, item) in body.items.enumerated() {
            switch item {
            case .failure(let e): results[i] = .failure(e)
            case .success(let p):
                if BroadcasterChannelPattern.matches(p.channel.utf8, maxBytes: options.maxChannelBytes) {
                    toSubmit.append((i, p))
                } else {
                    results[i] = .failure(BroadcasterError(.invalidArgument, "invalid channel"))
                }
            }
        }
        if !body.batch, case .failure(let e)? = results[0] {
            // The reference answers 500 to an invalid channel; a 400 with the error object says what is wrong.
            metrics.restBadBody.increment()
            return .response(json(BroadcasterResponse.errorObject(e), .badRequest))
        }
        if toSubmit.isEmpty { return .response(render(results.map { $0! }, batch: body.batch)) }
        // Answered once every owner has ordered its message, so the answer carries the offset
        // and epoch (the owners answer on their own threads; the collector gathers them).
        let slot = context.deferResponse()
        let collector = RESTCollector(results: results, pending: toSubmit.count)
        let batch = body.batch
        let renderer = RESTRenderer(corsAllowOrigin: options.corsAllowOrigin)
        for (i, p) in toSubmit {
            let accepted = submit(p) { result in
                if let done = collector.complete(i, result) { slot.respond(renderer.render(done, batch: batch)) }
            }
            if accepted != nil {
                metrics.publishesREST.increment()
            } else {
                metrics.publishesRefused.increment()
                if let done = collector.complete(i, .failure(BroadcasterError(.internal, "the channel's owner is overloaded, try again"))) {
                    slot.respond(renderer.render(done, batch: batch))
                }
            }
        }
        return .deferred(slot)
    }

    func render(_ results: [Result<BroadcasterMessage, BroadcasterError>], batch: Bool) -> WorkerResponse {
        RESTRenderer(corsAllowOrigin: options.corsAllowOrigin).render(results, batch: batch)
    }
}

/// Builds REST answers; Sendable, so owners' threads can render the answer they complete.
struct RESTRenderer: Sendable {
    let corsAllowOrigin: String

    var corsFields: HTTPFields {
        [.accessControlAllowOrigin: corsAllowOrigin,
         .accessControlAllowHeaders: "Content-Type, Authorization",
         .accessControlAllowMethods: "POST, OPTIONS"]
    }

    func json(_ body: [UInt8], _ status: HTTPResponse.Status = .ok) -> WorkerResponse {
        var fields = corsFields
        fields[.contentType] = "application/json"
        return WorkerResponse(status: status, headerFields: fields, body: body + [0x0A])
    }

    /// The response for finished results: the message (single) or an array of messages and
    /// error objects in request order (batch).
    func render(_ results: [Result<BroadcasterMessage, BroadcasterError>], batch: Bool) -> WorkerResponse {
        if !batch {
            switch results[0] {
            case .success(let m): return json(BroadcasterResponse.restMessage(m))
            case .failure(let e): return json(BroadcasterResponse.errorObject(e), e.code == .internal ? .serviceUnavailable : .badRequest)
            }
        }
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (i, r) in results.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            switch r {
            case .success(let m): out += BroadcasterResponse.restMessage(m)
            case .failure(let e): out += BroadcasterResponse.errorObject(e)
            }
        }
        out.append(UInt8(ascii: "]"))
        return json(out)
    }
}

/// Gathers the owners' answers to one REST request (they arrive on several shards' threads).
final class RESTCollector: Sendable {
    private let state: Mutex<(results: [Result<BroadcasterMessage, BroadcasterError>?], pending: Int)>

    init(results: [Result<BroadcasterMessage, BroadcasterError>?], pending: Int) {
        precondition(pending > 0)
        state = Mutex((results, pending))
    }

    /// Records item `index`; returns every result when this was the last one.
    func complete(_ index: Int, _ result: Result<BroadcasterMessage, BroadcasterError>) -> [Result<BroadcasterMessage, BroadcasterError>]? {
        state.withLock { s in
            precondition(s.results[index] == nil, "item answered twice")
            s.results[index] = result
            s.pending -= 1
            return s.pending == 0 ? s.results.map { $0! } : nil
        }
    }
}
