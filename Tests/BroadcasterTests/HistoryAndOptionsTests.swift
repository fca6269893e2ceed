import Testing
import Switchboard
import SwitchboardProtocols

private func message(_ n: Int, bytes: Int = 1, at time: Int64 = 0) -> BroadcasterMessage {
    BroadcasterMessage(id: "m\(n)", channel: "c", event: "e", payload: [UInt8](repeating: UInt8(ascii: "1"), count: bytes),
                       createTimeNanoseconds: time, offset: 0, epoch: "")
}

@Suite("Broadcaster: channel history and options")
struct HistoryAndOptionsTests {
    @Test func offsetsAndRecoveryWithinLimits() {
        var log = BroadcasterChannelLog(epoch: "E1", limits: BroadcasterHistoryLimits(maxMessages: 3, maxBytes: 100))
        for n in 1...5 { #expect(log.append(message(n), nowNanoseconds: 0).offset == n) }
        #expect(log.retainedCount == 3)
        // Offsets 3, 4, 5 are kept: recovering from 2 (next 3) works, from 1 (next 2) does not.
        #expect(log.recover(since: .init(offset: 2, epoch: "E1"), nowNanoseconds: 0) == .recovered((3...5).map { log.expected($0) }, lastOffset: 5))
        #expect(log.recover(since: .init(offset: 1, epoch: "E1"), nowNanoseconds: 0) == .notRecovered(lastOffset: 5))
        #expect(log.recover(since: .init(offset: 5, epoch: "E1"), nowNanoseconds: 0) == .recovered([], lastOffset: 5))
        #expect(log.recover(since: .init(offset: 6, epoch: "E1"), nowNanoseconds: 0) == .notRecovered(lastOffset: 5))
        #expect(log.recover(since: .init(offset: 4, epoch: "E0"), nowNanoseconds: 0) == .notRecovered(lastOffset: 5))
    }

    @Test func byteAndAgeLimits() {
        var log = BroadcasterChannelLog(epoch: "E", limits: BroadcasterHistoryLimits(maxMessages: 100, maxBytes: 10, maxAgeMilliseconds: 1000))
        _ = log.append(message(1, bytes: 4, at: 0), nowNanoseconds: 0)
        _ = log.append(message(2, bytes: 4, at: 0), nowNanoseconds: 0)
        _ = log.append(message(3, bytes: 4, at: 500_000_000), nowNanoseconds: 500_000_000)
        #expect(log.retainedCount == 2 && log.retainedBytes == 8)
        // One second later the first two are too old.
        #expect(log.recover(since: .init(offset: 2, epoch: "E"), nowNanoseconds: 1_400_000_000).lastOffset == 3)
        #expect(log.retainedCount == 1)
        #expect(log.recover(since: .init(offset: 1, epoch: "E"), nowNanoseconds: 1_400_000_000) == .notRecovered(lastOffset: 3))
        // A message larger than the whole budget breaks the chain.
        _ = log.append(message(4, bytes: 11, at: 1_400_000_000), nowNanoseconds: 1_400_000_000)
        #expect(log.retainedCount == 0)
        #expect(log.recover(since: .init(offset: 3, epoch: "E"), nowNanoseconds: 1_400_000_000) == .notRecovered(lastOffset: 4))
    }

    @Test func historyOffStillNumbers() {
        var log = BroadcasterChannelLog(epoch: "E", limits: .off)
        for n in 1...3 { _ = log.append(message(n), nowNanoseconds: 0) }
        #expect(log.lastOffset == 3 && log.retainedCount == 0)
        #expect(log.recover(since: .init(offset: 3, epoch: "E"), nowNanoseconds: 0) == .recovered([], lastOffset: 3))
        #expect(log.recover(since: .init(offset: 2, epoch: "E"), nowNanoseconds: 0) == .notRecovered(lastOffset: 3))
    }

    @Test func longRunCompacts() {
        var log = BroadcasterChannelLog(epoch: "E", limits: BroadcasterHistoryLimits(maxMessages: 10, maxBytes: 1 << 20))
        for n in 1...10_000 { _ = log.append(message(n), nowNanoseconds: 0) }
        #expect(log.retainedCount == 10)
        guard case .recovered(let ms, 10_000) = log.recover(since: .init(offset: 9_990, epoch: "E"), nowNanoseconds: 0) else {
            Issue.record("not recovered"); return
        }
        #expect(ms.map(\.offset) == Array(9_991...10_000))
    }

    @Test func rules() {
        let rules = [BroadcasterHistoryRule(pattern: "chat:*", limits: .init(maxMessages: 5, maxBytes: 10)),
                     BroadcasterHistoryRule(pattern: "news", limits: .init(maxMessages: 1, maxBytes: 1)),
                     BroadcasterHistoryRule(pattern: "*", limits: .off)]
        #expect(BroadcasterHistoryRule.limits(for: "chat:1", in: rules).maxMessages == 5)
        #expect(BroadcasterHistoryRule.limits(for: "news", in: rules).maxMessages == 1)
        #expect(BroadcasterHistoryRule.limits(for: "newsx", in: rules).isOff)
        #expect(BroadcasterHistoryRule.limits(for: "x", in: []).isOff)
    }

    @Test func parseOptions() throws {
        let c = try broadcasterSection([
            "broadcaster_enabled": "true", "broadcaster_base_path": "/bc", "broadcaster_jwt_secret": String(repeating: "s", count: 32),
            "broadcaster_api_keys": "k1|k2", "broadcaster_history": "chat:*|100|1048576|60000, news|5|100|0",
            "broadcaster_max_message_bytes": "4096",
        ])
        let o = try c.makeOptions(readFile: noFiles)
        #expect(c.enabled)
        #expect(o.webSocketPath == "/bc/websocket" && o.publishPath == "/bc/publish" && o.healthPath == "/bc/health")
        #expect(o.apiKeys.count == 2 && o.apiKeys.contains(Array("k2".utf8)))
        #expect(o.history.count == 2 && o.history[1] == BroadcasterHistoryRule(pattern: "news", limits: .init(maxMessages: 5, maxBytes: 100)))
        #expect(o.maxMessageBytes == 4096 && o.verifier != nil)
        // The section writes back what it read (the example file is made of these values).
        var again = BroadcasterConfiguration()
        for (key, _) in BroadcasterConfiguration.keys {
            var v = try #require(c.value(forKey: key))
            if v.count >= 2 && v.hasPrefix("\"") && v.hasSuffix("\"") { v = String(v.dropFirst().dropLast()) }
            try again.set(key, v)
        }
        for (key, _) in BroadcasterConfiguration.keys { #expect(again.value(forKey: key) == c.value(forKey: key), "\(key)") }

        func refused(_ values: [String: String]) -> String? {
            do { _ = try broadcasterSection(values).makeOptions(readFile: noFiles); return nil } catch { return error.message }
        }
        #expect(refused(["broadcaster_jwt_secret": "short"])?.contains("shorter than 32") == true)
        #expect(refused(["broadcaster_bogus": "1"]) == "unknown option 'broadcaster_bogus'")
        #expect(refused(["broadcaster_history": "chat:*|x|1|1"]) == "broadcaster_history: 'chat:*|x|1|1' is not PATTERN|MESSAGES|BYTES|AGE_MS")
        #expect(refused(["broadcaster_base_path": "bc"]) != nil)
        #expect(refused(["broadcaster_max_message_bytes": "12"]) != nil)
        #expect(refused(["broadcaster_jwt_leeway_seconds": "-1"]) != nil)
        #expect(refused(["broadcaster_max_token_bytes": "10"]) != nil)
        #expect(refused(["broadcaster_enabled": "maybe"]) == "broadcaster_enabled: 'maybe' is not true or false")
        #expect(refused(["broadcaster_enabled": "true"])?.contains("configure a JWT key") == true)
        #expect(refused(["broadcaster_jwt_rs256_public_key_file": "/nope"]) == "broadcaster_jwt_rs256_public_key_file: no file /nope")
    }

    @Test func referenceEnvironment() throws {
        let settings = try BroadcasterConfiguration.referenceEnvironment([
            "PORT": "9000", "JWT_SECRET": "test-secret", "API_KEYS": "a|b|c", "BASE_PATH": "/x",
        ])
        #expect(settings.map { "\($0.key)=\($0.value)" } == [
            "broadcaster_enabled=true", "broadcaster_allow_short_secret=true", "broadcaster_jwt_secret=test-secret",
            "broadcaster_api_keys=a|b|c", "broadcaster_base_path=/x", "port=9000",
        ])
        let defaults = try BroadcasterConfiguration.referenceEnvironment(["JWT_SECRET": "s", "API_KEYS": "k"])
        #expect(defaults.last == .init(key: "port", value: "8000", variable: "compatibility mode"))
        #expect(!defaults.contains { $0.key == "broadcaster_base_path" })
        let missing = #expect(throws: ConfigurationError.self) { try BroadcasterConfiguration.referenceEnvironment(["JWT_SECRET": "s"]) }
        #expect(missing?.description == "environment variable API_KEYS: required in compatibility mode")
        #expect(BroadcasterConfiguration.compatibilityModeRequested(executablePath: "/opt/bin/broadcaster", environment: [:]))
        #expect(BroadcasterConfiguration.compatibilityModeRequested(executablePath: "switchboard", environment: ["SWITCHBOARD_BROADCASTER_COMPAT": "1"]))
        #expect(!BroadcasterConfiguration.compatibilityModeRequested(executablePath: "/usr/bin/switchboard", environment: ["JWT_SECRET": "s"]))
    }
}

/// The `broadcaster_*` section with `values` applied (as `--set` would) and validated.
func broadcasterSection(_ values: [String: String]) throws(ConfigurationError) -> BroadcasterConfiguration {
    var layers = LayeredConfiguration(sections: [BroadcasterConfiguration.self])
    for (key, value) in values.sorted(by: { $0.key < $1.key }) {
        try layers.add(key: key, value: value, origin: .commandLine(flag: "--set"))
    }
    var c = BroadcasterConfiguration()
    try layers.apply(to: &c)
    if let problem = c.validate() { throw ConfigurationError(origin: nil, message: problem) }
    return c
}

/// A `readFile` for tests without key files.
func noFiles(_ path: String) throws(ConfigurationError) -> String {
    throw ConfigurationError(origin: nil, message: "no file \(path)")
}

extension BroadcasterChannelLog {
    /// The message the log assigned `offset` (test helper: same id/payload as `message(_:)`).
    func expected(_ offset: Int) -> BroadcasterMessage {
        var m = message(offset)
        m.offset = offset
        m.epoch = epoch
        return m
    }
}
