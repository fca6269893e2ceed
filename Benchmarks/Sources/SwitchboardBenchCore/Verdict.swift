/// How many connections may fail (to open, or closed by the server during the run) before a
/// run counts as failed: `--max-failed-connections N` or `N%` of the connections requested.
/// The default is 0: a benchmark figure from a run that lost connections is not a figure.
public enum ConnectionTolerance: Sendable, Equatable, CustomStringConvertible {
    case count(Int)
    case percent(Double)

    /// "5" -> .count(5), "2.5%" -> .percent(2.5). nil for negatives, > 100 % or junk.
    public static func parse(_ text: String) -> ConnectionTolerance? {
        if text.hasSuffix("%") {
            guard let p = Double(text.dropLast()), p >= 0, p <= 100, p.isFinite else { return nil }
            return .percent(p)
        }
        guard let n = Int(text), n >= 0 else { return nil }
        return .count(n)
    }

    /// Failures allowed among `requested` connections (a percentage rounds down).
    public func allowedFailures(of requested: Int) -> Int {
        switch self {
        case .count(let n): return n
        case .percent(let p): return Int((Double(requested) * p / 100).rounded(.down))
        }
    }

    public var description: String {
        switch self {
        case .count(let n): return String(n)
        case .percent(let p): return fixed(p, p.rounded() == p ? 0 : 2) + "%"
        }
    }
}

extension BenchResult {
    /// Why the run does not count, one sentence each; empty when it passed. A failed run exits
    /// 1 and prints these instead of being read as a throughput figure.
    public var failures: [String] {
        var f: [String] = []
        let o = options
        let allowed = o.maxFailedConnections.allowedFailures(of: connectionsRequested)
        let lostConnections = failedConnections + closedByServer
        if established == 0 {
            f.append("no connection was established (\(failedConnections) of \(connectionsRequested) failed)")
        } else if lostConnections > allowed {
            f.append("\(failedConnections) of \(connectionsRequested) connections failed to open and \(closedByServer) were closed by the server: "
                     + "\(lostConnections) lost, more than the \(allowed) allowed (--max-failed-connections \(o.maxFailedConnections))")
        }
        if let stalled = stalledNanos {
            f.append("stopped early: nothing was sent or received for \(fixed(Double(stalled) / 1e9, 1)) s (--drain)")
        }
        switch o.scenario {
        case .echo, .latency:
            if established > 0 && received == 0 { f.append("no round trip completed (\(sent) messages sent)") }
        case .fanout:
            if established > 0 && sent == 0 {
                f.append("nothing was published in the measured window")
            } else if received < expected {
                f.append("\(expected - received) of \(expected) deliveries missing (received \(received))")
            }
            if sequenceMissing > 0 || reordered > 0 || misrouted > 0 {
                f.append("per-subscriber order broken: \(sequenceMissing) sequence numbers missing, \(reordered) reordered or duplicated, "
                         + "\(misrouted) from another channel's publishers (\(verifiedSubscribers) subscribers checked)")
            }
        case .connect:
            break
        }
        return f
    }

    /// True when the run counts (`failures` is empty).
    public var passed: Bool { failures.isEmpty }
}
