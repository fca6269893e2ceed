import SwitchboardWebSocket

/// The option checks both command lines make (`BenchCommand`, `TemplateCommand`): the same
/// rule and the same message for the same option, thrown as the command's own usage error
/// (`problem` wraps the message), so each command's `--help` and usage line stay its own.
/// Performs no I/O and resolves no names.
struct OptionChecks<Failure: Error> {
    /// Makes the command's usage error from a message.
    let problem: (String) -> Failure

    /// `v` when it is at least `min`; nil when the option was not given.
    func atLeast(_ name: String, _ v: Int?, _ min: Int) throws(Failure) -> Int? {
        guard let v else { return nil }
        guard v >= min else { throw problem("\(name) expects an integer >= \(min), got '\(v)'") }
        return v
    }

    /// A duration like 10s, 500ms or 2m, in nanoseconds; nil when the option was not given.
    func duration(_ name: String, _ v: String?) throws(Failure) -> Int64? {
        guard let v else { return nil }
        guard let d = parseDuration(v) else { throw problem("\(name) expects a duration like 10s or 500ms, got '\(v)'") }
        return d
    }

    /// `--size`: 1 B up to `maxBytes` (`maxText` names it in the message); nil when not given.
    func size(_ v: String?, maxBytes: Int, maxText: String) throws(Failure) -> Int? {
        guard let v else { return nil }
        guard let s = parseSize(v), s >= 1, s <= maxBytes else { throw problem("--size expects 1 B to \(maxText), got '\(v)'") }
        return s
    }

    /// `--header` lines: 'Name: value', no CR or LF (they go into the handshake as they are).
    func headers(_ lines: [String]) throws(Failure) -> [String] {
        for h in lines {
            guard let colon = h.firstIndex(of: ":"), colon != h.startIndex, !h.contains("\r"), !h.contains("\n") else {
                throw problem("--header expects 'Name: value', got '\(h)'")
            }
        }
        return lines
    }

    /// `--server-pid`: a positive process id; nil when not given.
    func serverPID(_ v: Int?) throws(Failure) -> Int32? {
        guard let p = try atLeast("--server-pid", v, 1) else { return nil }
        guard let pid = Int32(exactly: p) else { throw problem("--server-pid out of range: \(p)") }
        return pid
    }

    /// `--max-failed-connections`: N or N%; nil when not given.
    func tolerance(_ v: String?) throws(Failure) -> ConnectionTolerance? {
        guard let v else { return nil }
        guard let t = ConnectionTolerance.parse(v) else {
            throw problem("--max-failed-connections expects N or N% (0 to 100%), got '\(v)'")
        }
        return t
    }

    /// The loopback rule: a target outside 127.0.0.0/8, ::1 and localhost needs `--allow-remote`.
    func loopback(_ url: WebSocketURL, allowRemote: Bool) throws(Failure) {
        guard url.isLoopback || allowRemote else {
            throw problem("refusing non-loopback target '\(url.host)' (only 127.0.0.0/8, ::1, localhost); pass --allow-remote to override")
        }
    }

    /// An ASCII token that goes into a JSON string unescaped (a role prefix, a method, a
    /// channel, a token): printable, no space, quote or backslash.
    func jsonSafe(_ name: String, _ v: String?) throws(Failure) -> String? {
        guard let v else { return nil }
        guard !v.isEmpty, v.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != 34 && $0 != 92 }) else {
            throw problem("\(name) expects printable ASCII without quotes or backslashes")
        }
        return v
    }
}
