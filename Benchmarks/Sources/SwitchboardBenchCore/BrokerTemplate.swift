import CLiburing
import Histogram
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// The connection-broker template: `pairs` pairs of raw WebSocket clients. Each pair's A and B
/// `register` (roles PREFIX-a, PREFIX-b), A `open`s a channel to B (A gets `channel_opened`,
/// B `incoming_channel` from A with the same channel id), then both send `message`s on the
/// channel, `window` per direction not yet delivered.
///
/// Verified for every message: the sender's `channel_message_sent` comes back with `replyTo`
/// = the request's `id`, in request order, on the right channel; the peer's `channel_message`
/// carries the channel id and exactly the payload sent (a `#sb:SENDER:SEQ:NANOS#` marker
/// padded to `--size`), every SEQ once and in order. Anything else (an `error` or `*_failed`
/// reply, an unknown type) is counted wrong. The rate is deliveries per second; the latency
/// is send -> delivery to the peer (and send -> acknowledgement separately).
final class BrokerTemplate {
    /// One direction of a pair: what its sender sent and what came back.
    struct Side {
        let socket: Int
        let peer: Int
        /// `sender` in the markers: pair * 2 + (0 for A, 1 for B).
        let sender: Int
        var connectionId = ""
        var channelId = ""
        var channelJSON: [UInt8] = []
        /// Next SEQ to send, and the next SEQ expected from the peer.
        var nextSeq: Int64 = 0
        var expectedFromPeer: Int64 = 0
        /// Request ids (= 3 + SEQ) awaiting `channel_message_sent`, oldest first, with send times.
        var pendingAcks = TimeRing()
        var nextAckSeq: Int64 = 0
        /// Messages of this side delivered to the peer (the window counts sent - delivered).
        var delivered: Int64 = 0
    }

    let options: TemplateOptions
    let engine: TemplateEngine
    private var sides: [Side] = []
    private var result: TemplateResult
    private var phase = TemplatePhase(name: "channel messages")
    private var histogram = makeHistogram()
    private var ackHistogram = makeHistogram()
    /// Payload padding: 'x' up to `--size` after the marker.
    private let padding: [UInt8]

    init(options: TemplateOptions) throws(BenchError) {
        self.options = options
        engine = try TemplateEngine(options: options)
        result = TemplateResult(options: options)
        padding = [UInt8](repeating: 120, count: max(options.size, 1))
    }

    func run() -> TemplateResult {
        result.connectionsRequested = 2 * options.pairs
        let opened = engine.setUpPairs(options.pairs, connected: { [self] a, b, p in
            sides.append(Side(socket: a, peer: b, sender: 2 * p))
            sides.append(Side(socket: b, peer: a, sender: 2 * p + 1))
        }, setUp: setUp)
        result.established = opened.established
        result.setupFailure = opened.failure
        if let seconds = opened.seconds {
            result.setupSeconds = seconds
            load()
        }
        engine.finish(into: &result)
        return result
    }

    // MARK: Set-up

    /// Registers every client and opens each pair's channel. Returns why it failed, or nil.
    private func setUp() -> String? {
        let o = options
        var problem: String? = nil
        var registered = 0
        engine.onMessage = { [self] i, raw, _ in
            guard problem == nil else { return }
            guard let m = ReceivedObject(raw), m.string("type") == "registered", m.integer("replyTo") == 1,
                  let id = m.string("connectionId"), !id.isEmpty else {
                problem = "register: expected {\"type\":\"registered\",\"replyTo\":1,\"connectionId\":…}, got \(String(decoding: raw, as: UTF8.self).prefix(200))"
                return
            }
            guard sides[i].connectionId.isEmpty else { problem = "register: a second answer: \(m.text.prefix(200))"; return }
            sides[i].connectionId = id
            registered += 1
        }
        for s in sides {
            let role = "\(o.rolePrefix)-\(s.sender % 2 == 0 ? "a" : "b")"
            engine.send(s.socket, Array("{\"type\":\"register\",\"role\":\(jsonQuoted(role)),\"id\":1}".utf8))
        }
        let deadline = sb_monotonic_ns() + o.setupTimeoutNanos
        let allRegistered = engine.pump(until: deadline) { problem != nil || registered == sides.count || engine.closedCount > 0 }
        if let problem { return problem }
        if engine.closedCount > 0 { return "register: \(engine.closeReasons.first ?? "a connection closed")" }
        if !allRegistered { return "register: \(sides.count - registered) of \(sides.count) clients got no `registered` within \(fixed(Double(o.setupTimeoutNanos) / 1e9, 1)) s" }

        var opened = 0
        engine.onMessage = { [self] i, raw, _ in
            guard problem == nil else { return }
            let text = String(decoding: raw, as: UTF8.self).prefix(200)
            guard let m = ReceivedObject(raw) else { problem = "open: not a JSON object: \(text)"; return }
            if i % 2 == 0 {
                guard m.string("type") == "channel_opened", m.integer("replyTo") == 2, let ch = m.string("channelId"),
                      m.string("targetId") == sides[i + 1].connectionId else {
                    problem = "open: expected channel_opened (replyTo 2, targetId the peer), got \(text)"
                    return
                }
                guard sides[i].channelId.isEmpty else { problem = "open: a second channel_opened: \(text)"; return }
                sides[i].channelId = ch
            } else {
                guard m.string("type") == "incoming_channel", m.string("from") == sides[i - 1].connectionId,
                      let ch = m.string("channelId") else {
                    problem = "open: expected incoming_channel from the opener, got \(text)"
                    return
                }
                guard sides[i].channelId.isEmpty else { problem = "open: a second incoming_channel: \(text)"; return }
                sides[i].channelId = ch
            }
            opened += 1
        }
        for k in stride(from: 0, to: sides.count, by: 2) {
            engine.send(sides[k].socket, Array("{\"type\":\"open\",\"targetId\":\(jsonQuoted(sides[k + 1].connectionId)),\"id\":2}".utf8))
        }
        let allOpened = engine.pump(until: sb_monotonic_ns() + o.setupTimeoutNanos) {
            problem != nil || opened == sides.count || engine.closedCount > 0
        }
        if let problem { return problem }
        if engine.closedCount > 0 { return "open: \(engine.closeReasons.first ?? "a connection closed")" }
        if !allOpened { return "open: \(sides.count - opened) of \(sides.count) channel ends missing within \(fixed(Double(o.setupTimeoutNanos) / 1e9, 1)) s" }
        for k in stride(from: 0, to: sides.count, by: 2) where sides[k].channelId != sides[k + 1].channelId {
            return "open: the opener's channel \(sides[k].channelId) is not the target's \(sides[k + 1].channelId)"
        }
        for k in sides.indices { sides[k].channelJSON = Array(jsonQuoted(sides[k].channelId).utf8) }
        return nil
    }

    // MARK: Load

    private func load() {
        engine.onMessage = { [self] i, raw, now in received(i, raw, now) }
        let cost = engine.runMeasuredPhase(
            start: { [self] now in for k in sides.indices { fill(k, now) } },
            progress: { [self] in phase.completed + phase.warmupCompleted + phase.acknowledged + phase.wrong + phase.errors },
            outstanding: { [self] in outstanding() })
        cost.record(into: &phase)
        for s in sides {
            phase.missing += Int(s.nextSeq - s.delivered) + s.pendingAcks.count
        }
        phase.latency = latencySummary(histogram)
        phase.ackLatency = latencySummary(ackHistogram)
        result.phases.append(phase)
        for k in sides.indices { sides[k].pendingAcks.free() }
    }

    /// Messages sent and not yet both delivered and acknowledged, over every side.
    private func outstanding() -> Int {
        sides.reduce(0) { $0 + Int($1.nextSeq - $1.delivered) + $1.pendingAcks.count }
    }

    /// Sends side k's messages until `window` are undelivered (or sending stopped).
    private func fill(_ k: Int, _ now: Int64) {
        while sides[k].nextSeq - sides[k].delivered < Int64(options.window) {
            switch engine.measured.admit(now) {
            case .stop: return
            case .warmup: break
            case .measured: phase.sent += 1
            }
            sendMessage(k, now)
        }
    }

    private func sendMessage(_ k: Int, _ now: Int64) {
        let seq = sides[k].nextSeq
        sides[k].nextSeq += 1
        var text: [UInt8] = []
        text.reserveCapacity(options.size + 160)
        text += Array("{\"type\":\"message\",\"channelId\":".utf8)
        text += sides[k].channelJSON
        text += Array(",\"payload\":\"".utf8)
        let markerStart = text.count
        text += [UInt8](repeating: 0, count: 64)
        let markerBytes = text.withUnsafeMutableBytes { writeMarker($0.baseAddress! + markerStart, publisher: sides[k].sender, seq: seq, nanos: now) }
        text.removeLast(64 - markerBytes)
        if options.size > markerBytes { text += padding[0..<(options.size - markerBytes)] }
        text += Array("\",\"id\":\(3 + seq)}".utf8)
        sides[k].pendingAcks.push(now)
        engine.send(sides[k].socket, text)
    }

    private func received(_ i: Int, _ raw: UnsafeRawBufferPointer, _ now: Int64) {
        guard let m = ReceivedObject(raw) else {
            phase.wrong += 1
            phase.note("not a JSON object: \(String(decoding: raw, as: UTF8.self))")
            return
        }
        switch m.string("type") {
        case "channel_message_sent":
            let expectedId = 3 + sides[i].nextAckSeq
            guard m.integer("replyTo") == Int(expectedId), m.string("channelId") == sides[i].channelId,
                  let sentAt = sides[i].pendingAcks.pop() else {
                phase.wrong += 1
                phase.note("expected channel_message_sent replyTo \(expectedId): \(m.text)")
                return
            }
            sides[i].nextAckSeq += 1
            phase.acknowledged += 1
            if engine.measured.isMeasured(sentAt: sentAt) { ackHistogram.record(UInt64(clamping: max(now - sentAt, 0))) }
        case "channel_message":
            let from = sides[i].peer
            guard m.string("channelId") == sides[i].channelId, let payload = m.raw("payload"), payload.count >= 2 else {
                phase.wrong += 1
                phase.note("channel_message without this channel or a payload: \(m.text)")
                return
            }
            // The payload is a JSON string of ASCII: its text between the quotes is the content.
            let inner = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(payload)[1..<(payload.count - 1)])
            guard let mark = findMarker(inner.baseAddress!, inner.count), mark.publisher == sides[from].sender,
                  mark.seq == sides[i].expectedFromPeer, inner.count == max(options.size, markerLength(inner)) else {
                phase.wrong += 1
                phase.note("expected the peer's message \(sides[i].expectedFromPeer) (\(options.size) B): \(m.text)")
                return
            }
            sides[i].expectedFromPeer += 1
            sides[from].delivered += 1
            if engine.measured.isMeasured(sentAt: mark.nanos) {
                phase.completed += 1
                histogram.record(UInt64(clamping: max(now - mark.nanos, 0)))
                engine.measured.completed(now)
            } else {
                phase.warmupCompleted += 1
            }
            fill(from, now)
        case let type?:
            if type == "error" || type.hasSuffix("_failed") {
                phase.errors += 1
                phase.note(m.text)
            } else {
                phase.wrong += 1
                phase.note("unexpected: \(m.text)")
            }
        case nil:
            phase.wrong += 1
            phase.note("no type: \(m.text)")
        }
    }

    /// Length of the marker at the start of `p` ("#...#"), for a payload smaller than a marker.
    private func markerLength(_ p: UnsafeRawBufferPointer) -> Int {
        var k = 1
        while k < p.count && p[k] != 35 { k += 1 }
        return k + 1
    }
}

/// Runs a broker, rpc or broadcaster template to completion.
public func runTemplate(_ options: TemplateOptions) throws(BenchError) -> TemplateRun {
    switch options.template {
    case .broker:
        return .protocolRun(try BrokerTemplate(options: options).run())
    case .rpc:
        return .protocolRun(try RPCTemplate(options: options).run())
    case .broadcaster:
        return .fanout(try runBenchmark(broadcasterFanoutOptions(options), progress: !options.quiet))
    }
}

/// A template's outcome: the broker and rpc report `TemplateResult`, the broadcaster the
/// fan-out scenario's `BenchResult`.
public enum TemplateRun: Sendable {
    case protocolRun(TemplateResult)
    case fanout(BenchResult)

    public var summary: String {
        switch self {
        case .protocolRun(let r): return r.summary
        case .fanout(let r): return "template broadcaster\n" + r.summary
        }
    }

    public var json: String {
        switch self {
        case .protocolRun(let r): return r.json
        case .fanout(let r): return r.json
        }
    }

    public var failures: [String] {
        switch self {
        case .protocolRun(let r): return r.failures
        case .fanout(let r): return r.failures
        }
    }

    public var passed: Bool { failures.isEmpty }
}
