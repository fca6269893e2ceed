/// One value of one metric at one instant: what `/metrics` prints and what `MetricsExporter`
/// reports to swift-metrics. Counters only grow (their names end in `_total`); gauges go up
/// and down.
public struct MetricSample: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case counter
        case gauge
    }

    /// Prometheus-style name, e.g. `switchboard_bytes_sent_total`.
    public var name: String
    public var help: String
    public var kind: Kind
    /// Label name and value pairs, e.g. `[("shard", "0")]`; empty for a process-wide value.
    public var dimensions: [Dimension]
    public var value: Int

    public struct Dimension: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// `kind` defaults to the naming convention: `_total` is a counter, anything else a gauge.
    public init(name: String, help: String, kind: Kind? = nil, dimensions: [Dimension] = [], value: Int) {
        self.name = name
        self.help = help
        self.kind = kind ?? (name.hasSuffix("_total") ? .counter : .gauge)
        self.dimensions = dimensions
        self.value = value
    }
}

/// The Prometheus text exposition format (version 0.0.4) of a list of samples.
public enum PrometheusText {
    /// One `# HELP` / `# TYPE` block per metric name, in order of first appearance, followed by
    /// every sample of that name in input order.
    public static func render(_ samples: [MetricSample]) -> String {
        var order: [String] = []
        var byName: [String: [MetricSample]] = [:]
        for s in samples {
            if byName[s.name] == nil { order.append(s.name) }
            byName[s.name, default: []].append(s)
        }
        var out = ""
        for name in order {
            let family = byName[name]!
            out += "# HELP \(name) \(family[0].help)\n# TYPE \(name) \(family[0].kind.rawValue)\n"
            for s in family {
                if s.dimensions.isEmpty {
                    out += "\(name) \(s.value)\n"
                } else {
                    let labels = s.dimensions.map { "\($0.name)=\"\($0.value)\"" }.joined(separator: ",")
                    out += "\(name){\(labels)} \(s.value)\n"
                }
            }
        }
        return out
    }
}
