import Histogram
import SwitchboardJSON

/// One measured phase of a template run (broker: the channel messages; rpc: one request form).
public struct TemplatePhase: Sendable {
    public var name: String
    /// Measured messages sent (broker: `message` requests; rpc: requests).
    public var sent = 0
    /// Measured messages fully answered: broker, delivered to the peer; rpc, answered with the
    /// right result. The rate is these per measured second.
    public var completed = 0
    public var measuredSeconds = 0.0
    public var perSecond = 0.0
    /// Over the whole phase, warm-up included: what was sent and never answered (broker:
    /// never delivered or never acknowledged), answers that were wrong (content, order,
    /// an unknown id, a duplicate), error replies.
    public var missing = 0
    public var wrong = 0
    public var errors = 0
    /// broker: acknowledgements (`channel_message_sent`) received; rpc: requests the harness's
    /// peer connection answered (remote-client form).
    public var acknowledged = 0
    /// rpc: answers that came after one of a later request of the same client (reported, not
    /// a failure: the protocol does not order answers).
    public var outOfOrder = 0
    /// Messages answered during the warm-up and the drain (outside the measured figures), so
    /// that the phase's server CPU is divided by everything it served.
    public var warmupCompleted = 0
    /// First few wrong answers and error replies, verbatim (truncated).
    public var samples: [String] = []
    /// Send -> answer (broker: send -> delivery to the peer).
    public var latency: LatencySummary? = nil
    /// broker: send -> acknowledgement.
    public var ackLatency: LatencySummary? = nil
    /// Server CPU over the phase (warm-up and drain included), user and system.
    public var serverUserSeconds: Double? = nil
    public var serverSystemSeconds: Double? = nil
    public var serverCPUSeconds: Double? {
        guard let u = serverUserSeconds, let s = serverSystemSeconds else { return nil }
        return u + s
    }
    public var clientCPUSeconds = 0.0

    public init(name: String) { self.name = name }

    /// Why the phase does not count, one sentence each.
    public var failures: [String] {
        var f: [String] = []
        if sent == 0 { f.append("\(name): nothing was sent in the measured window") }
        if missing > 0 { f.append("\(name): \(missing) replies missing") }
        if wrong > 0 { f.append("\(name): \(wrong) wrong replies (content, order, unknown or duplicate id)") }
        if errors > 0 { f.append("\(name): \(errors) error replies") }
        return f
    }

    mutating func note(_ text: String) {
        if samples.count < 5 { samples.append(String(text.prefix(300))) }
    }
}

/// Everything a broker or rpc template run measured.
public struct TemplateResult: Sendable {
    public var options: TemplateOptions
    public var connectionsRequested = 0
    public var established = 0
    /// Connections the server closed (or that broke) during the run.
    public var closed = 0
    public var closeReasons: [String] = []
    /// A set-up step that failed (connect, register, open, init, node-id), with why.
    public var setupFailure: String? = nil
    public var setupSeconds = 0.0
    public var phases: [TemplatePhase] = []
    public var serverRSSKiB: Int? = nil

    public init(options: TemplateOptions) { self.options = options }

    public var failures: [String] {
        var f: [String] = []
        if let s = setupFailure { f.append("set-up: \(s)") }
        if closed > 0 { f.append("\(closed) of \(established) connections closed during the run (\(closeReasons.joined(separator: "; ")))") }
        if setupFailure == nil && phases.isEmpty { f.append("no phase ran") }
        for p in phases { f += p.failures }
        return f
    }

    public var passed: Bool { failures.isEmpty }

    public var summary: String {
        let o = options
        var s = "switchboard-bench \(o.template.rawValue) ws://\(o.url.hostHeader)\(o.url.resource)\n"
        s += "  pairs \(o.pairs), window \(o.window), size \(o.size) B"
        if let n = o.messages { s += ", messages \(n)" } else { s += ", duration \(fixed(Double(o.durationNanos) / 1e9, 1)) s" }
        if o.warmupNanos > 0 { s += ", warm-up \(fixed(Double(o.warmupNanos) / 1e9, 1)) s" }
        s += "\n  connections: \(established) of \(connectionsRequested) established, \(closed) closed during the run; set-up \(fixed(setupSeconds, 3)) s\n"
        for p in phases {
            s += "  \(p.name): sent \(p.sent), completed \(p.completed) in \(fixed(p.measuredSeconds, 3)) s = \(fixed(p.perSecond, 0)) msg/s"
            s += o.template == .broker ? ", acknowledged \(p.acknowledged)" : (p.acknowledged > 0 ? ", answered by the peer client \(p.acknowledged)" : "")
            s += "\n    missing \(p.missing), wrong \(p.wrong), errors \(p.errors)"
            if o.template == .rpc { s += ", answered out of request order \(p.outOfOrder)" }
            s += "\n"
            if let l = p.latency {
                s += "    latency µs\(o.template == .broker ? " (send -> delivery)" : ""): p50 \(micros(l.p50))  p90 \(micros(l.p90))  p99 \(micros(l.p99))  p99.9 \(micros(l.p999))  max \(micros(l.max))  (n=\(l.count))\n"
            }
            if let l = p.ackLatency {
                s += "    ack latency µs: p50 \(micros(l.p50))  p99 \(micros(l.p99))  max \(micros(l.max))\n"
            }
            s += "    client CPU \(fixed(p.clientCPUSeconds, 2)) s"
            if let u = p.serverUserSeconds, let sy = p.serverSystemSeconds {
                s += ", server CPU user \(fixed(u, 2)) s + system \(fixed(sy, 2)) s"
                // The phase's messages, warm-up included, divide the phase's CPU.
                let all = p.completed + p.warmupCompleted
                if all > 0 { s += " = \(fixed(u * 1e6 / Double(all), 3)) + \(fixed(sy * 1e6 / Double(all), 3)) µs per message" }
            }
            s += "\n"
            for sample in p.samples { s += "    sample: \(sample)\n" }
        }
        if let r = serverRSSKiB { s += "  server RSS \(r) KiB\n" }
        s += verdictLines(failures)
        return s
    }

    public var json: String {
        let o = options
        return JSONWriter.document { j in
            j.field("template", o.template.rawValue)
            j.field("url", "ws://\(o.url.hostHeader)\(o.url.resource)")
            j.field("pairs", o.pairs); j.field("window", o.window); j.field("size", o.size)
            j.field("connectionsRequested", connectionsRequested); j.field("established", established); j.field("closed", closed)
            j.field("setupSeconds", setupSeconds)
            j.field("passed", passed)
            j.key("failures"); j.array(failures)
            j.key("phases")
            j.objects(phases) { q, p in
                q.field("name", p.name); q.field("sent", p.sent); q.field("completed", p.completed)
                q.field("measuredSeconds", p.measuredSeconds); q.field("perSecond", p.perSecond)
                q.field("missing", p.missing); q.field("wrong", p.wrong); q.field("errors", p.errors)
                q.field("acknowledged", p.acknowledged); q.field("outOfOrder", p.outOfOrder)
                if let l = p.latency {
                    q.field("p50Micros", Double(l.p50) / 1000); q.field("p99Micros", Double(l.p99) / 1000); q.field("p999Micros", Double(l.p999) / 1000)
                }
                q.field("clientCpuSeconds", p.clientCPUSeconds)
                if let u = p.serverUserSeconds, let sy = p.serverSystemSeconds { q.field("serverUserSeconds", u); q.field("serverSystemSeconds", sy) } else { q.null("serverCpuSeconds") }
            }
        }
    }
}

func latencySummary(_ h: Histogram<UInt64>) -> LatencySummary? {
    guard h.totalCount > 0 else { return nil }
    return LatencySummary(count: h.totalCount, min: h.min, mean: h.mean, p50: h.valueAtPercentile(50), p90: h.valueAtPercentile(90),
                          p99: h.valueAtPercentile(99), p999: h.valueAtPercentile(99.9), max: h.max)
}

/// A received protocol message as a JSON object: its bytes and members (SwitchboardJSON's
/// strict reader). Only valid inside the `onMessage` call that made it.
struct ReceivedObject {
    let bytes: UnsafeBufferPointer<UInt8>
    let members: [String: JSONMember]

    init?(_ raw: UnsafeRawBufferPointer) {
        let b = raw.bindMemory(to: UInt8.self)
        guard let m = try? JSONReader.parseObject(b, maxDepth: 32) else { return nil }
        bytes = b
        members = m
    }

    func string(_ key: String) -> String? {
        guard let m = members[key], m.kind == .string else { return nil }
        return try? JSONReader.decodeString(bytes, m.range)
    }

    func integer(_ key: String) -> Int? {
        guard let m = members[key], m.kind == .number else { return nil }
        return JSONReader.safeInteger(bytes, m.range)
    }

    /// The raw JSON text of member `key`.
    func raw(_ key: String) -> UnsafeBufferPointer<UInt8>? {
        guard let m = members[key] else { return nil }
        return UnsafeBufferPointer(rebasing: bytes[m.range])
    }

    /// The elements of array member `key`, decoded as strings (nil when it is not an array of
    /// strings).
    func strings(_ key: String) -> [String]? {
        guard let m = members[key], m.kind == .array,
              let elements = try? JSONReader.parseArray(bytes, in: m.range, maxDepth: 4) else { return nil }
        var out: [String] = []
        for e in elements {
            guard e.kind == .string, let s = try? JSONReader.decodeString(bytes, e.range) else { return nil }
            out.append(s)
        }
        return out
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A JSON string literal of `s` (quotes and backslashes escaped; the templates only put ASCII in).
func jsonQuoted(_ s: String) -> String {
    var out: [UInt8] = []
    SwitchboardJSON.JSONWriter.appendString(&out, s)
    return String(decoding: out, as: UTF8.self)
}
