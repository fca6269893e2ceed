import CLiburing
import Histogram
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// The RPC template (amqp-swarm protocol): `pairs` pairs of raw WebSocket clients, each a node
/// of the server. Every client waits for `{"type":"init"}`; for the server and remote-client
/// forms each asks its node's id (`node-id()`), so client 2p's requests go to the node of
/// 2p + 1 and back. Then each form in `--forms` runs in turn, every client keeping `window`
/// requests in flight:
/// - client: `METHOD("C:SEQ", PAD)` to its own node;
/// - server: `call(PEER_NODE, METHOD, "C:SEQ", PAD)`: a server request node -> node;
/// - remote-client: `relay(PEER_NODE, METHOD, "C:SEQ", PAD)`: through the peer's node to the
///   peer client, which this harness answers with the arguments it got.
///
/// Verified: every request gets exactly one answer, a `response` whose `result` is exactly
/// `["C:SEQ", PAD]`; an `error` reply, an unknown or repeated correlation id, or another
/// result counts against the run. Answers may come in any order (handlers run concurrently:
/// the protocol does not order them); how many came early is reported. Requests from the node
/// to a client other than METHOD (e.g. the example's `whoami`) get a `null` result.
final class RPCTemplate {
    struct Client {
        let socket: Int
        let peer: Int
        var initialized = false
        var nodeId: String? = nil
        var nodeJSON: [UInt8] = []
        /// Send times of the requests in flight, by SEQ (the correlation id is the number SEQ).
        var inflight: [Int64: Int64] = [:]
        var nextSeq: Int64 = 0
        /// Highest SEQ answered, for the out-of-order count.
        var highestAnswered: Int64 = -1
    }

    let options: TemplateOptions
    let engine: TemplateEngine
    private var clients: [Client] = []
    private var result: TemplateResult
    private var form = RPCForm.client
    private var phase = TemplatePhase(name: "")
    private var histogram = makeHistogram()
    private let pad: String
    private let padJSON: [UInt8]

    init(options: TemplateOptions) throws(BenchError) {
        self.options = options
        engine = try TemplateEngine(options: options)
        result = TemplateResult(options: options)
        // The first argument "C:SEQ" is about 10 bytes; the pad brings the arguments to --size.
        pad = String(repeating: "x", count: max(options.size - 10, 1))
        padJSON = Array(jsonQuoted(pad).utf8)
    }

    func run() -> TemplateResult {
        result.connectionsRequested = 2 * options.pairs
        let opened = engine.setUpPairs(options.pairs, connected: { [self] a, b, _ in
            clients.append(Client(socket: a, peer: b))
            clients.append(Client(socket: b, peer: a))
        }, setUp: setUp)
        result.established = opened.established
        result.setupFailure = opened.failure
        if let seconds = opened.seconds {
            result.setupSeconds = seconds
            for f in options.forms {
                runForm(f)
                if engine.closedCount > 0 { break }
            }
        }
        engine.finish(into: &result)
        return result
    }

    // MARK: Set-up

    private func setUp() -> String? {
        let o = options
        var problem: String? = nil
        let needIds = o.forms.contains(.server) || o.forms.contains(.remoteClient)
        engine.onMessage = { [self] i, raw, _ in
            guard problem == nil else { return }
            guard let m = ReceivedObject(raw) else { problem = "not a JSON object: \(String(decoding: raw, as: UTF8.self).prefix(200))"; return }
            if answerNodeRequest(i, m) { return }
            switch m.string("type") {
            case "init":
                guard !clients[i].initialized else { problem = "a second init"; return }
                clients[i].initialized = true
                if needIds {
                    engine.send(clients[i].socket, Array("{\"type\":\"request\",\"name\":\"node-id\",\"args\":[],\"correlationId\":\"node-id\"}".utf8))
                }
            case "response" where m.string("correlationId") == "node-id":
                guard let id = m.string("result"), !id.isEmpty else { problem = "node-id: expected a string result, got \(m.text.prefix(200))"; return }
                clients[i].nodeId = id
            default:
                problem = "set-up: expected init\(needIds ? " and the node-id() answer" : ""), got \(m.text.prefix(200))"
            }
        }
        let ready = engine.pump(until: sb_monotonic_ns() + o.setupTimeoutNanos) {
            problem != nil || engine.closedCount > 0 || clients.allSatisfy { $0.initialized && (!needIds || $0.nodeId != nil) }
        }
        if let problem { return problem }
        if engine.closedCount > 0 { return engine.closeReasons.first ?? "a connection closed" }
        if !ready {
            let waiting = clients.filter { !$0.initialized || (needIds && $0.nodeId == nil) }.count
            return "\(waiting) of \(clients.count) clients got no init\(needIds ? " or node-id() answer" : "") within \(fixed(Double(o.setupTimeoutNanos) / 1e9, 1)) s"
        }
        for k in clients.indices {
            if let id = clients[clients[k].peer].nodeId { clients[k].nodeJSON = Array(jsonQuoted(id).utf8) }
        }
        return nil
    }

    /// Answers a request or ping from a node (a remote-client request, `whoami`, a ping).
    /// Returns false when `m` is not one.
    private func answerNodeRequest(_ i: Int, _ m: ReceivedObject) -> Bool {
        switch m.string("type") {
        case "ping":
            guard let c = m.raw("correlationId") else { return true }
            engine.send(clients[i].socket, Array("{\"type\":\"pong\",\"correlationId\":".utf8) + Array(c) + [125])
            return true
        case "request":
            guard let c = m.raw("correlationId") else {
                phase.wrong += 1
                phase.note("a node request without a correlationId: \(m.text)")
                return true
            }
            let isMethod = m.string("name") == options.method
            var reply = Array("{\"type\":\"response\",\"correlationId\":".utf8) + Array(c) + Array(",\"result\":".utf8)
            if isMethod, let args = m.raw("args") { reply += Array(args) } else { reply += Array("null".utf8) }
            reply.append(125)
            engine.send(clients[i].socket, reply)
            if isMethod { phase.acknowledged += 1 }
            return true
        default:
            return false
        }
    }

    // MARK: Load

    private func runForm(_ f: RPCForm) {
        form = f
        phase = TemplatePhase(name: f.rawValue)
        histogram = makeHistogram()
        engine.onMessage = { [self] i, raw, now in received(i, raw, now) }
        let cost = engine.runMeasuredPhase(
            start: { [self] now in for k in clients.indices { fill(k, now) } },
            progress: { [self] in phase.completed + phase.warmupCompleted + phase.wrong + phase.errors + phase.acknowledged },
            outstanding: { [self] in clients.reduce(0) { $0 + $1.inflight.count } })
        cost.record(into: &phase)
        for k in clients.indices {
            phase.missing += clients[k].inflight.count
            clients[k].inflight.removeAll()
        }
        phase.latency = latencySummary(histogram)
        result.phases.append(phase)
    }

    private func fill(_ k: Int, _ now: Int64) {
        while clients[k].inflight.count < options.window {
            switch engine.measured.admit(now) {
            case .stop: return
            case .warmup: break
            case .measured: phase.sent += 1
            }
            let seq = clients[k].nextSeq
            clients[k].nextSeq += 1
            clients[k].inflight[seq] = now
            var text = Array("{\"type\":\"request\",\"name\":".utf8)
            switch form {
            case .client: text += Array(jsonQuoted(options.method).utf8) + Array(",\"args\":[".utf8)
            case .server: text += Array("\"call\",\"args\":[".utf8) + clients[k].nodeJSON + [44] + Array(jsonQuoted(options.method).utf8) + [44]
            case .remoteClient: text += Array("\"relay\",\"args\":[".utf8) + clients[k].nodeJSON + [44] + Array(jsonQuoted(options.method).utf8) + [44]
            }
            text += Array("\"\(k):\(seq)\",".utf8) + padJSON + Array("],\"correlationId\":\(seq)}".utf8)
            engine.send(clients[k].socket, text)
        }
    }

    private func received(_ i: Int, _ raw: UnsafeRawBufferPointer, _ now: Int64) {
        guard let m = ReceivedObject(raw) else {
            phase.wrong += 1
            phase.note("not a JSON object: \(String(decoding: raw, as: UTF8.self))")
            return
        }
        if answerNodeRequest(i, m) { return }
        switch m.string("type") {
        case "response":
            guard let seq = m.integer("correlationId").map(Int64.init), let sentAt = clients[i].inflight.removeValue(forKey: seq) else {
                phase.wrong += 1
                phase.note("a response to no request in flight: \(m.text)")
                return
            }
            guard let r = m.strings("result"), r.count == 2, r[0] == "\(i):\(seq)", r[1] == pad else {
                phase.wrong += 1
                phase.note("wrong result for \(i):\(seq): \(m.text)")
                fill(i, now)
                return
            }
            if seq < clients[i].highestAnswered { phase.outOfOrder += 1 }
            clients[i].highestAnswered = max(clients[i].highestAnswered, seq)
            if engine.measured.isMeasured(sentAt: sentAt) {
                phase.completed += 1
                histogram.record(UInt64(clamping: max(now - sentAt, 0)))
                engine.measured.completed(now)
            } else {
                phase.warmupCompleted += 1
            }
            fill(i, now)
        case "error":
            if let seq = m.integer("correlationId").map(Int64.init), clients[i].inflight.removeValue(forKey: seq) != nil {
                fill(i, now)
            }
            phase.errors += 1
            phase.note(m.text)
        default:
            phase.wrong += 1
            phase.note("unexpected: \(m.text)")
        }
    }
}
