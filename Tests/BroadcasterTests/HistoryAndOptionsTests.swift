import Testing
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
        let (o, enabled) = try BroadcasterOptions.parse([
            "broadcaster_enabled": "true", "broadcaster_base_path": "/bc", "broadcaster_jwt_secret": String(repeating: "s", count: 32),
            "broadcaster_api_keys": "k1|k2", "broadcaster_history": "chat:*|100|1048576|60000, news|5|100|0",
            "broadcaster_max_message_bytes": "4096",
        ], readFile: { _ in nil })
        #expect(enabled)
        #expect(o.webSocketPath == "/bc/websocket" && o.publishPath == "/bc/publish" && o.healthPath == "/bc/health")
        #expect(o.apiKeys.count == 2 && o.apiKeys.contains(Array("k2".utf8)))
        #expect(o.history.count == 2 && o.history[1] == BroadcasterHistoryRule(pattern: "news", limits: .init(maxMessages: 5, maxBytes: 100)))
        #expect(o.maxMessageBytes == 4096 && o.verifier != nil)

        func refused(_ values: [String: String]) -> String? {
            do { _ = try BroadcasterOptions.parse(values, readFile: { _ in nil }); return nil } catch { return error.message }
        }
        #expect(refused(["broadcaster_jwt_secret": "short"])?.contains("shorter than 32") == true)
        #expect(refused(["broadcaster_bogus": "1"]) == "unknown option 'broadcaster_bogus'")
        #expect(refused(["broadcaster_history": "chat:*|x|1|1"]) != nil)
        #expect(refused(["broadcaster_base_path": "bc"]) != nil)
        #expect(refused(["broadcaster_max_message_bytes": "12"]) != nil)
        #expect(refused(["broadcaster_enabled": "true"])?.contains("configure a JWT key") == true)
        #expect(refused(["broadcaster_jwt_rs256_public_key_file": "/nope"]) == "broadcaster_jwt_rs256_public_key_file: cannot read /nope")
    }

    @Test func referenceEnvironment() throws {
        let (o, port) = try BroadcasterOptions.referenceCompatible(environment: [
            "PORT": "9000", "JWT_SECRET": "test-secret", "API_KEYS": "a|b|c", "BASE_PATH": "/x",
            "SWITCHBOARD_BROADCASTER_MAX_MESSAGE_BYTES": "2048",
        ])
        #expect(port == 9000 && o.basePath == "/x" && o.apiKeys.count == 3 && o.verifier != nil && o.maxMessageBytes == 2048)
        let (d, defaultPort) = try BroadcasterOptions.referenceCompatible(environment: ["JWT_SECRET": "s", "API_KEYS": "k"])
        #expect(defaultPort == 8000 && d.basePath == "/broadcaster")
        #expect(throws: BroadcasterConfigurationError("API_KEYS is required")) {
            try BroadcasterOptions.referenceCompatible(environment: ["JWT_SECRET": "s"])
        }
        #expect(BroadcasterOptions.values(fromEnvironment: ["SWITCHBOARD_BROADCASTER_BASE_PATH": "/y", "BASE_PATH": "/z"])
                == ["broadcaster_base_path": "/y"])
    }
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

@Suite("Broadcaster: executable setup")
struct BroadcasterSetupTests {
    @Test func extractKeepsLineNumbers() {
        let text = "port = 1\n# broadcaster_enabled = true\nbroadcaster_enabled = true # on\n  broadcaster_base_path = \"/bc\"\nshards = 2"
        let (values, rest) = BroadcasterSetup.extract(configurationText: text)
        #expect(values == ["broadcaster_enabled": "true", "broadcaster_base_path": "/bc"])
        #expect(rest == "port = 1\n# broadcaster_enabled = true\n\n\nshards = 2")
    }

    @Test func resolvePrecedenceAndCompatibility() throws {
        let secret = String(repeating: "k", count: 32)
        let r = try BroadcasterSetup.resolve(
            fileValues: ["broadcaster_enabled": "true", "broadcaster_jwt_secret": secret, "broadcaster_base_path": "/file"],
            environment: ["SWITCHBOARD_BROADCASTER_BASE_PATH": "/env", "JWT_SECRET": "ignored"],
            executablePath: "/usr/bin/switchboard", readFile: { _ in nil })
        #expect(r.enabled && r.options.basePath == "/env" && r.port == nil)
        let off = try BroadcasterSetup.resolve(fileValues: [:], environment: [:], executablePath: "switchboard", readFile: { _ in nil })
        #expect(!off.enabled)
        let compat = try BroadcasterSetup.resolve(fileValues: [:], environment: ["JWT_SECRET": "s", "API_KEYS": "a|b", "PORT": "8123"],
                                                  executablePath: "/opt/bin/broadcaster", readFile: { _ in nil })
        #expect(compat.enabled && compat.port == 8123 && compat.options.apiKeys.count == 2)
        let byVariable = try BroadcasterSetup.resolve(fileValues: [:], environment: ["JWT_SECRET": "s", "API_KEYS": "a", "SWITCHBOARD_BROADCASTER_COMPAT": "1"],
                                                      executablePath: "switchboard", readFile: { _ in nil })
        #expect(byVariable.enabled && byVariable.port == 8000)
        #expect(throws: BroadcasterConfigurationError("JWT_SECRET is required")) {
            try BroadcasterSetup.resolve(fileValues: [:], environment: [:], executablePath: "broadcaster", readFile: { _ in nil })
        }
    }
}
