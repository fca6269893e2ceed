import CJWTTestSupport
import Foundation
import Switchboard
import SwitchboardIO
import SwitchboardJWT
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing
@testable import SwitchboardClient

private let secret = "sdk-broadcaster-test-secret-32-bytes!"
private let apiKey = "sdk-test-api-key"

/// An HS256 token for `channels` with `scope`, valid for an hour from now.
private func token(channels: [String], scope: [String]) -> String {
    let now = Int(Date().timeIntervalSince1970)
    let channelList = channels.map { "\"\($0)\"" }.joined(separator: ",")
    let scopeList = scope.map { "\"\($0)\"" }.joined(separator: ",")
    let claims = #"{"sub":"sdk","aud":"broadcaster","exp":\#(now + 3600),"iat":\#(now),"authorizedChannels":[\#(channelList)],"scope":[\#(scopeList)]}"#
    let input = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
    var mac = [UInt8](repeating: 0, count: 64)
    let key = Array(secret.utf8), bytes = Array(input.utf8)
    let length = sbt_hmac("SHA256", key, key.count, bytes, bytes.count, &mac)
    precondition(length == 32)
    return input + "." + Base64URL.encode(mac[0..<32])
}

/// A broadcaster on an ephemeral port (epoll, one shard) that takes this file's tokens and API
/// key and keeps history on `news*`; the caller shuts it down. Returns it and the address of
/// its base path ("127.0.0.1:PORT/BASE").
private func startNewsBroadcaster() throws -> (Broker, String) {
    raiseFileLimit()
    var c = BrokerConfiguration()
    c.host = "127.0.0.1"
    c.port = 0
    c.io.backend = .epoll
    c.io.shardCount = 1
    var o = BroadcasterOptions()
    o.verifier = JWTVerifier(keys: [try JWTKey(hmacSecret: Array(secret.utf8))], configuration: .init(leewaySeconds: 30))
    o.apiKeys = APIKeySet([apiKey])
    o.history = [BroadcasterHistoryRule(pattern: "news*", limits: .init(maxMessages: 1000, maxBytes: 1 << 20))]
    let broadcaster = Broadcaster(options: o)
    let broker = Broker(configuration: c, logger: .discarding) { broadcaster.makeHandler($0) }
    try broker.start()
    return (broker, "127.0.0.1:\(broker.port)\(o.basePath)")
}

/// REST-publishes each of `values` (as a number, event "e") to "news", one after the other.
private func restPublishNews(_ base: String, _ values: ClosedRange<Int>) async throws {
    for i in values {
        try await BroadcasterClient.publish(restURL: "http://\(base)", apiKey: apiKey, channel: "news", event: "e",
                                            payload: .number(Double(i)))
    }
}

@Suite("BroadcasterClient against Switchboard's broadcaster", .serialized)
struct BroadcasterClientTests {
    /// auth, subscribe, REST publish, broadcasts in order; the connection drops, messages are
    /// published meanwhile, and the client comes back (new token from the provider) and
    /// recovers exactly the missed ones from its last offset; refreshToken re-authenticates.
    @Test func subscribeRecoverAfterReconnectRefreshAndRESTPublish() async throws {
        let (broker, base) = try startNewsBroadcaster()
        defer { broker.shutdown(graceMilliseconds: 500) }

        let tokens = Atomic<Int>(0)
        let client = BroadcasterClient(
            url: "ws://\(base)/websocket",
            options: BrokerClientOptions(requestTimeout: .seconds(5), autoReconnect: true,
                                         reconnectDelay: .milliseconds(10), maxReconnectDelay: .milliseconds(100)),
            tokenProvider: {
                tokens.add(1, ordering: .relaxed)
                return token(channels: ["news"], scope: ["subscribe"])
            })
        let received = Recorder<BroadcastMessage>()
        client.onBroadcast = { received.append($0) }
        try await client.connect()
        try await client.subscribe("news")
        try await restPublishNews(base, 1...2)
        #expect(await eventually { received.count == 2 })

        client.dropConnection()
        // Published while the client is away: kept in the channel's history.
        try await restPublishNews(base, 3...4)
        #expect(await eventually { client.reconnectCount == 1 && received.count == 4 })
        try await restPublishNews(base, 5...5)
        #expect(await eventually { received.count == 5 })
        #expect(received.all.map(\.payload) == [1, 2, 3, 4, 5], "each broadcast once, in order, the missed ones recovered")
        #expect(received.all.map(\.offset) == [1, 2, 3, 4, 5])
        #expect(tokens.load(ordering: .relaxed) == 2, "a fresh token at connect and at the reconnect")

        try await client.refreshToken()
        #expect(tokens.load(ordering: .relaxed) == 3)
        // Failures come back as errors: a channel the token does not authorize, a wrong API key.
        await #expect(throws: BrokerClientError.self) { try await client.subscribe("sports") }
        await #expect(throws: BrokerClientError.self) {
            try await BroadcasterClient.publish(restURL: "http://\(base)", apiKey: "wrong", channel: "news", event: "e", payload: .null)
        }
        await client.disconnect()
    }
}

@Suite("BroadcasterClient.broadcasts: the bounded event sequence", .serialized)
struct BroadcasterSequenceTests {
    private func client(_ base: String, capacity: Int, overflow: InboundOverflowPolicy) -> BroadcasterClient {
        var options = BrokerClientOptions(requestTimeout: .seconds(5))
        options.eventCapacity = capacity
        options.eventOverflow = overflow
        return BroadcasterClient(url: "ws://\(base)/websocket", options: options,
                                 tokenProvider: { token(channels: ["news"], scope: ["subscribe"]) })
    }

    /// suspendReading with room for one: five broadcasts published while nobody reads all
    /// arrive, in order, once the application reads (the connection waited instead of
    /// dropping); disconnect() ends the sequence.
    @Test func suspendReadingLosesNothingAndDisconnectEndsTheSequence() async throws {
        let (broker, base) = try startNewsBroadcaster()
        defer { broker.shutdown(graceMilliseconds: 500) }
        let client = client(base, capacity: 1, overflow: .suspendReading)
        let sequence = client.broadcasts
        try await client.connect()
        try await client.subscribe("news")
        try await restPublishNews(base, 1...5)
        var received: [JSONValue] = []
        for await broadcast in sequence {
            received.append(broadcast.payload)
            if received.count == 5 { break }
        }
        #expect(received == [1, 2, 3, 4, 5])
        #expect(client.droppedBroadcastCount == 0)
        await client.disconnect()
        var iterator = sequence.makeAsyncIterator()
        #expect(await iterator.next() == nil, "the sequence ends at disconnect()")
    }

    /// dropNewest with room for two: of five unread broadcasts the first two are kept and three
    /// are dropped and counted; requests still get their replies meanwhile.
    @Test func dropNewestKeepsTheFirstAndCountsTheRest() async throws {
        let (broker, base) = try startNewsBroadcaster()
        defer { broker.shutdown(graceMilliseconds: 500) }
        let client = client(base, capacity: 2, overflow: .dropNewest)
        let sequence = client.broadcasts
        try await client.connect()
        try await client.subscribe("news")
        try await restPublishNews(base, 1...5)
        #expect(await eventually { client.droppedBroadcastCount == 3 })
        try await client.refreshToken()  // the connection keeps reading: replies come through
        var iterator = sequence.makeAsyncIterator()
        #expect(await iterator.next()?.payload == 1)
        #expect(await iterator.next()?.payload == 2)
        await client.disconnect()
        #expect(await iterator.next() == nil)
    }
}
