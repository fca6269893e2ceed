import Testing
@testable import SwitchboardRESP
import SwitchboardTestSupport
#if canImport(Foundation)
import Foundation // tests only: Process to run redis-server
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A blocking connection whose replies are parsed one byte per `parse` call, as they arrive.
final class RedisConnection {
    let client: TestClient
    private let limits: RESPLimits
    private var parser: RESPParser

    init(port: Int, limits: RESPLimits = RESPLimits()) throws {
        client = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
        self.limits = limits
        parser = RESPParser(limits: limits)
    }

    func send(_ arguments: [String]) throws {
        var out: [UInt8] = []
        RESPWriter.writeCommand(arguments, into: &out)
        try client.send(out)
    }

    /// The next value (or parse error) and its exact bytes. Every byte goes through its own
    /// `parse` call; the bytes are then parsed again whole and in random splits, which must agree.
    func next() throws -> (event: Event, raw: [UInt8]) {
        var raw: [UInt8] = []
        while true {
            if client.buffered.isEmpty {
                guard try client.fill() else { throw TestClient.Failure.closed }
            }
            let byte = client.buffered[0]
            client.removeBuffered(1)
            raw.append(byte)
            let (consumed, result) = [byte].withUnsafeBytes { parser.parse($0) }
            #expect(consumed == 1)
            switch result {
            case .needMore: continue
            case .value(let v):
                check(raw, .value(v))
                return (.value(v), raw)
            case .error(let e):
                check(raw, .error(e))
                return (.error(e), raw)
            }
        }
    }

    func value() throws -> RESPValue {
        let (event, raw) = try next()
        guard case .value(let v) = event else {
            throw RedisServer.Failure(description: "parse error \(event) on \(String(decoding: raw, as: UTF8.self).debugDescription)")
        }
        return v
    }

    func call(_ arguments: [String]) throws -> RESPValue {
        try send(arguments)
        return try value()
    }

    func callRaw(_ arguments: [String]) throws -> (RESPValue, [UInt8]) {
        try send(arguments)
        let (event, raw) = try next()
        guard case .value(let v) = event else { throw RedisServer.Failure(description: "\(event)") }
        return (v, raw)
    }

    private func check(_ raw: [UInt8], _ expected: Event) {
        var rng = SplitMix64(state: UInt64(raw.count))
        #expect(parseWhole(raw, limits: limits) == [expected], "whole")
        #expect(parseSplit(raw, chunks: [1 + rng.below(64), 1 + rng.below(7)], limits: limits) == [expected], "split")
    }
}

@Suite(.serialized) struct RedisServerTests {
    @Test func resp3RepliesOfEveryKind() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = try RedisConnection(port: server.port)

        // RESP2 until HELLO 3.
        #expect(try redis.call(["PING"]) == .simpleString("PONG"))
        let hello = try redis.call(["HELLO", "3"])
        guard case .map(let fields) = hello else { Issue.record("HELLO 3: \(hello)"); return }
        #expect(fields.contains(entry(bulk("proto"), .integer(3))))
        #expect(fields.contains(entry(bulk("server"), bulk("redis"))))
        #expect(fields.contains(entry(bulk("mode"), bulk("standalone"))))
        #expect(fields.count == 7, "server, version, proto, id, mode, role, modules")

        #expect(try redis.call(["SET", "k", "v"]) == .simpleString("OK"))
        #expect(try redis.callRaw(["GET", "k"]) == (bulk("v"), bytes("$1\r\nv\r\n")))
        #expect(try redis.callRaw(["GET", "missing"]) == (.null, bytes("_\r\n")))
        #expect(try redis.callRaw(["INCR", "counter"]) == (.integer(1), bytes(":1\r\n")))
        #expect(try redis.call(["SADD", "s", "a", "b", "c"]) == .integer(3))
        guard case .set(let members) = try redis.call(["SMEMBERS", "s"]) else { Issue.record("SMEMBERS is not a set"); return }
        #expect(Set(members) == [bulk("a"), bulk("b"), bulk("c")] && members.count == 3)
        #expect(try redis.call(["ZADD", "z", "1.5", "m", "inf", "top"]) == .integer(2))
        #expect(try redis.callRaw(["ZSCORE", "z", "m"]) == (.double(1.5), bytes(",1.5\r\n")))
        #expect(try redis.callRaw(["ZSCORE", "z", "top"]) == (.double(.infinity), bytes(",inf\r\n")))
        #expect(try redis.call(["HSET", "h", "f", "v"]) == .integer(1))
        #expect(try redis.call(["HGETALL", "h"]) == .map([entry(bulk("f"), bulk("v"))]))
        guard case .simpleError(let unknown) = try redis.call(["NOSUCHCOMMAND", "x"]) else { Issue.record("no error"); return }
        #expect(unknown.hasPrefix("ERR unknown command"))
        #expect(try redis.call(["INCR", "k"]) == .simpleError("ERR value is not an integer or out of range"))
        #expect(try redis.call(["EVAL", "redis.setresp(3); return true", "0"]) == .boolean(true))
        #expect(try redis.call(["EVAL", "redis.setresp(3); return {double=2.5}", "0"]) == .double(2.5))

        // DEBUG PROTOCOL: one reply of each RESP3 type, as Redis itself writes it.
        #expect(try redis.call(["DEBUG", "PROTOCOL", "string"]) == bulk("Hello World"))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "integer"]) == .integer(12345))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "double"]) == .double(3.141))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "bignum"]) == .bigNumber("1234567999999999999999999999999999999"))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "null"]) == .null)
        #expect(try redis.call(["DEBUG", "PROTOCOL", "array"]) == .array([.integer(0), .integer(1), .integer(2)]))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "set"]) == .set([.integer(0), .integer(1), .integer(2)]))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "map"]) == .map([entry(.integer(0), .boolean(false)), entry(.integer(1), .boolean(true)), entry(.integer(2), .boolean(false))]))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "true"]) == .boolean(true))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "false"]) == .boolean(false))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "verbatim"]) == .verbatimString(format: "txt", text: bytes("This is a verbatim\nstring")))
        #expect(try redis.call(["DEBUG", "PROTOCOL", "attrib"]) == .attribute(
            [entry(bulk("key-popularity"), .array([bulk("key:123"), .integer(90)]))],
            bulk("Some real reply following the attribute")))
        // A push, then the reply itself.
        #expect(try redis.call(["DEBUG", "PROTOCOL", "push"]) == .push([bulk("server-cpu-usage"), .integer(42)]))
        #expect(try redis.value() == bulk("Some real reply following the push reply"))

        // Large replies: arriving in many reads, split anywhere by TCP.
        let elements = (0..<5_000).map { "element-\($0)" }
        #expect(try redis.call(["RPUSH", "list"] + elements) == .integer(5_000))
        #expect(try redis.call(["LRANGE", "list", "0", "-1"]) == .array(elements.map(bulk)))
        let large = String((0..<1_000_000).map { Character(UnicodeScalar(UInt8(0x61 + $0 % 26))) })
        #expect(try redis.call(["SET", "large", large]) == .simpleString("OK"))
        #expect(try redis.call(["GET", "large"]) == bulk(large))

        // SHUTDOWN closes the connection without a reply; the process exits.
        try redis.send(["SHUTDOWN", "NOSAVE"])
        #expect(throws: TestClient.Failure.self) { _ = try redis.next() }
        server.waitUntilExit()
        #expect(!server.isRunning)
    }

    @Test func resp2Replies() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = try RedisConnection(port: server.port)
        #expect(try redis.callRaw(["GET", "missing"]) == (.null, bytes("$-1\r\n")))
        #expect(try redis.callRaw(["BLPOP", "missing", "0.01"]) == (.null, bytes("*-1\r\n")))
        #expect(try redis.call(["HSET", "h", "f", "v"]) == .integer(1))
        #expect(try redis.call(["HGETALL", "h"]) == .array([bulk("f"), bulk("v")]))
        #expect(try redis.call(["ZADD", "z", "1.5", "m"]) == .integer(1))
        #expect(try redis.callRaw(["ZSCORE", "z", "m"]) == (bulk("1.5"), bytes("$3\r\n1.5\r\n")))
        #expect(try redis.call(["SADD", "s", "a"]) == .integer(1))
        #expect(try redis.call(["SMEMBERS", "s"]) == .array([bulk("a")]))
        guard case .simpleError = try redis.call(["GET"]) else { Issue.record("GET without key is an error"); return }
    }

    @Test func pubSubPushesAndLimitsOnRealReplies() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let subscriber = try RedisConnection(port: server.port)
        let publisher = try RedisConnection(port: server.port)
        guard case .map = try subscriber.call(["HELLO", "3"]) else { Issue.record("HELLO 3"); return }
        #expect(try subscriber.call(["SUBSCRIBE", "news"]) == .push([bulk("subscribe"), bulk("news"), .integer(1)]))
        #expect(try publisher.call(["PUBLISH", "news", "hello\r\nworld"]) == .integer(1))
        #expect(try subscriber.value() == .push([bulk("message"), bulk("news"), bulk("hello\r\nworld")]))
        // In RESP3 a subscribed connection can still run commands; their replies interleave with pushes.
        #expect(try subscriber.call(["PING"]) == .simpleString("PONG"))
        #expect(try publisher.call(["PUBLISH", "news", ""]) == .integer(1))
        #expect(try subscriber.value() == .push([bulk("message"), bulk("news"), .bulkString([])]))

        // Limits hold on real replies: an aggregate over the count is refused at its header.
        #expect(try publisher.call(["RPUSH", "list"] + (0..<101).map(String.init)) == .integer(101))
        let limited = try RedisConnection(port: server.port, limits: RESPLimits(maxAggregateCount: 100))
        try limited.send(["LRANGE", "list", "0", "-1"])
        let (event, raw) = try limited.next()
        #expect(event == .error(.aggregateTooLarge))
        #expect(raw == bytes("*101\r\n"), "refused at the header, before any element was read")
        let bulkLimited = try RedisConnection(port: server.port, limits: RESPLimits(maxBulkBytes: 4))
        try bulkLimited.send(["ECHO", "hello"])
        #expect(try bulkLimited.next() == (.error(.bulkTooLong), bytes("$5\r\n")))
    }
}
