import Foundation  // tests only: JSONSerialization
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

/// The flows of the reference's own tests (internal/server/*_test.go), over real sockets, on
/// both I/O backends; plus every error path of every method.
@Suite("Broadcaster: reference flows over real sockets", .serialized)
struct ReferenceFlowTests {
    private func isRFC3339UTC(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count >= 20, u.last == UInt8(ascii: "Z"), u[4] == UInt8(ascii: "-"), u[10] == UInt8(ascii: "T") else { return false }
        return s.utf8.allSatisfy { (0x30...0x39).contains($0) || "-:.TZ".utf8.contains($0) }
    }

    @Test("auth → subscribe → REST publish → broadcast with every field", arguments: backends)
    func successfulFlow(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend)
        let c = try server.authed()
        let sub = try c.expectResult(try c.call("subscribe", #"{"channel":"test-channel"}"#))
        #expect(Set(sub.keys) == ["subscriptionId", "timestamp"])
        #expect((sub["subscriptionId"] as? String)?.utf8.count == 21)
        #expect(isRFC3339UTC(sub["timestamp"] as? String ?? ""))

        let r = try server.restPublish(#"{"channel":"test-channel","event":"test-event","payload":{"foo":"bar","n":[1,2.50]}}"#)
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "application/json")
        #expect(r.header("Access-Control-Allow-Origin") == "*")
        let published = try JSONSerialization.jsonObject(with: Data(r.body)) as? JSON ?? [:]
        #expect(Set(published.keys) == ["id", "seq", "createTime", "channel", "event", "payload", "offset", "epoch"])
        #expect(published["seq"] as? Int == 0 && published["offset"] as? Int == 1)
        #expect(r.bodyText.hasSuffix("\n"))

        let b = try c.expectBroadcast()
        #expect(Set(b.keys) == ["id", "seq", "createTime", "channel", "event", "payload", "offset", "epoch"])
        #expect(b["id"] as? String == published["id"] as? String)
        #expect(b["createTime"] as? String == published["createTime"] as? String)
        #expect(isRFC3339UTC(b["createTime"] as? String ?? ""))
        #expect(b["seq"] as? Int == 1 && b["offset"] as? Int == 1)
        #expect(b["channel"] as? String == "test-channel" && b["event"] as? String == "test-event")
        // The payload arrives byte for byte as published.
        let second = try server.restPublish(#"{"channel":"test-channel","event":"e2","payload":{"foo":"bar","n":[1,2.50]}}"#)
        #expect(second.status == 200)
        let raw = try c.readText()
        #expect(raw.contains(#","payload":{"foo":"bar","n":[1,2.50]},"offset":2,"#), "\(raw)")
        #expect(raw.contains(#""seq":2,"#))
        // heartbeat
        let hb = try c.expectResult(try c.call("heartbeat"))
        #expect(Set(hb.keys) == ["timestamp"] && isRFC3339UTC(hb["timestamp"] as? String ?? ""))
    }

    @Test("invalid JSON closes the connection (4400) without a reply", arguments: backends)
    func invalidMessage(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend)
        let c = try server.client()
        try c.sendRaw("invalid-json")
        #expect(try c.expectClose() == 4400)
        let d = try server.client()
        try d.sendRaw(#"{"id":"1","method":"heartbeat"}"#)
        #expect(try d.expectClose() == 4400)
    }

    @Test("every error path of every method", arguments: backends)
    func errorPaths(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend)
        let anon = try server.client()
        try anon.expectError(try anon.call("subscribe", #"{"channel":"test-channel"}"#), "Unauthenticated", "authentication required")
        try anon.expectError(try anon.call("subscribe", #"{"channel":"bad channel"}"#), "InvalidArgument", "invalid channel")
        try anon.expectError(try anon.call("publish", #"{"channel":"test-channel"}"#), "Unauthenticated", "user not authenticated")
        try anon.expectError(try anon.call("nope"), "NotFound", "method not found: nope")
        try anon.expectError(try anon.call("subscribe"), "InvalidArgument", "missing params")
        try anon.expectError(try anon.call("auth", #"{"token":"x.y.z"}"#), "Unauthenticated")
        try anon.expectError(try anon.call("auth", #"{}"#), "Unauthenticated", "token is malformed")
        let noSub = server.token(sub: "")
        try anon.expectError(try anon.call("auth", #"{"token":"\#(noSub)"}"#), "InvalidArgument", "invalid subject claim")
        let noChannels = server.token(channels: [])
        try anon.expectError(try anon.call("auth", #"{"token":"\#(noChannels)"}"#), "InvalidArgument", "authorized channels cannot be empty")
        let wrongKey = hs256(#"{"sub":"u","aud":"broadcaster","exp":\#(server.clock.seconds + 60),"authorizedChannels":["a"]}"#,
                             secret: "another-secret-of-at-least-32-bytes!!")
        try anon.expectError(try anon.call("auth", #"{"token":"\#(wrongKey)"}"#), "Unauthenticated", "signature is invalid")
        // unsubscribe needs no authentication, and never fails on a channel not subscribed (the
        // reference can crash there).
        try anon.expectResult(try anon.call("unsubscribe", #"{"channel":"never-subscribed"}"#), #"{"success":true}"#)
        try anon.expectError(try anon.call("unsubscribe", #"{"channel":"a::b"}"#), "InvalidArgument", "invalid channel")
        // A notification's error is answered without requestId; its success is not answered.
        try anon.sendRaw(#"{"method":"nope"}"#)
        try anon.expectError(0, "NotFound", "method not found: nope")
        try anon.sendRaw(#"{"method":"heartbeat"}"#)
        #expect(anon.receivesNothing())

        // Unauthorized channel: Unauthenticated for subscribe (the reference's code), PermissionDenied for publish.
        let other = try server.authed(channels: ["another-channel"], scope: ["subscribe"])
        try other.expectError(try other.call("subscribe", #"{"channel":"test-channel"}"#), "Unauthenticated",
                              "user not authorized to access this channel")
        // Missing scope.
        let publisher = try server.authed(channels: ["test-channel"], scope: ["publish"])
        try publisher.expectError(try publisher.call("subscribe", #"{"channel":"test-channel"}"#), "PermissionDenied",
                                  "subscribe scope required to subscribe to a channel")
        try publisher.expectError(try publisher.call("publish", #"{"channel":"elsewhere"}"#), "PermissionDenied",
                                  "user not authorized to publish to this channel")
        try other.expectError(try other.call("publish", #"{"channel":"another-channel"}"#), "PermissionDenied",
                              "user not authorized to publish messages")
        // Double subscribe; a second auth for another subject.
        try other.expectResult(try other.call("subscribe", #"{"channel":"another-channel"}"#))
        try other.expectError(try other.call("subscribe", #"{"channel":"another-channel"}"#), "AlreadyExists")
        let stranger = server.token(sub: "user-2", channels: ["another-channel"])
        try other.expectError(try other.call("auth", #"{"token":"\#(stranger)"}"#), "FailedPrecondition", "connection is already authenticated")
        // subscribe → unsubscribe → disconnect (crashes the reference) is fine here.
        try other.expectResult(try other.call("unsubscribe", #"{"channel":"another-channel"}"#), #"{"success":true}"#)
    }

    @Test("WebSocket publish with the publish scope reaches subscribers on every shard", arguments: backends)
    func publishOverWebSocket(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend, shards: 3)
        let subscribers = try (0..<6).map { _ in try server.authed() }
        for s in subscribers { try s.expectResult(try s.call("subscribe", #"{"channel":"test-channel"}"#)) }
        let publisher = try server.authed(channels: ["test-channel"], scope: ["publish"])
        let id = try publisher.call("publish", #"{"channel":"test-channel","event":"ev","payload":[true,null]}"#)
        let result = try publisher.expectResult(id)
        #expect(Set(result.keys) == ["id", "seq", "createTime", "channel", "event", "payload", "offset", "epoch"])
        #expect(result["offset"] as? Int == 1)
        for s in subscribers {
            let b = try s.expectBroadcast()
            #expect(b["id"] as? String == result["id"] as? String && b["seq"] as? Int == 1 && b["event"] as? String == "ev")
        }
    }

    @Test("REST: API keys, bodies, CORS, health, batch", arguments: backends)
    func rest(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend)
        let c = try server.authed(channels: ["a", "b"])
        try c.expectResult(try c.call("subscribe", #"{"channel":"a"}"#))
        let body = #"{"channel":"a","event":"e","payload":1}"#
        let missing = try server.http("POST", "/broadcaster/publish", body: body)
        #expect(missing.status == 401 && missing.bodyText == "missing authorization header\n")
        #expect(try server.restPublish(body, key: "Bearer wrong").status == 401)
        #expect(try server.restPublish(body, key: "Bearer test-api-keyX").status == 401)
        #expect(try server.restPublish(body, key: "test-api-key").status == 200)  // bare key, as the reference
        #expect(try c.expectBroadcast()["seq"] as? Int == 1)
        let bad = try server.restPublish("{nope")
        #expect(bad.status == 400 && bad.bodyText == "invalid request body\n")
        let badChannel = try server.restPublish(#"{"channel":"no spaces","payload":1}"#)
        #expect(badChannel.status == 400 && badChannel.bodyText == #"{"error":{"code":"InvalidArgument","message":"invalid channel"}}"# + "\n")
        let preflight = try server.http("OPTIONS", "/broadcaster/publish", headers: ["Origin: https://x", "Access-Control-Request-Method: POST"])
        #expect(preflight.status == 200 && preflight.header("Access-Control-Allow-Methods") == "POST, OPTIONS")
        #expect(preflight.header("Access-Control-Allow-Headers") == "Content-Type, Authorization")
        #expect(try server.http("GET", "/broadcaster/publish").status == 405)
        let health = try server.http("GET", "/broadcaster/health")
        #expect(health.status == 200 && health.bodyText == "ok")
        #expect(try server.http("GET", "/broadcaster/nothing").status == 404)
        // Batch: results in order, a bad item does not stop the others.
        let batch = try server.restPublish(#"[{"channel":"a","event":"1"},{"channel":"bad channel"},{"channel":"b","event":"3"},{"channel":"a","event":"4"}]"#)
        #expect(batch.status == 200)
        let items = try JSONSerialization.jsonObject(with: Data(batch.body)) as? [JSON] ?? []
        #expect(items.count == 4)
        #expect(items[0]["event"] as? String == "1" && (items[1]["error"] as? JSON)?["code"] as? String == "InvalidArgument")
        #expect(items[2]["channel"] as? String == "b" && items[3]["event"] as? String == "4")
        let first = try c.expectBroadcast(), second = try c.expectBroadcast()
        #expect(first["event"] as? String == "1" && second["event"] as? String == "4")
        #expect(first["seq"] as? Int == 2 && second["seq"] as? Int == 3)
        let tooMany = try server.restPublish("[" + Array(repeating: #"{"channel":"a"}"#, count: 101).joined(separator: ",") + "]")
        #expect(tooMany.status == 400)
    }

    @Test("inbound message over the limit closes with 1009", arguments: backends)
    func messageTooBig(_ backend: IOBackendKind) throws {
        let server = try BCServer(backend: backend) { $0.maxMessageBytes = 1024 }
        let c = try server.client()
        try c.sendRaw(#"{"id":1,"method":"heartbeat","pad":""# + String(repeating: "x", count: 1000) + "\"}")
        #expect(try c.expectClose() == 1009)
        // A large JWT under the default limit (16 KiB) is fine.
        let roomy = try BCServer(backend: backend)
        let d = try roomy.client()
        let many = (0..<150).map { "channel-number-\($0)" }
        let id = try d.call("auth", #"{"token":"\#(roomy.token(channels: many))"}"#)
        try d.expectResult(id, #"{"success":true}"#)
    }
}

import CJWTTestSupport
import SwitchboardJWT

@Suite("Broadcaster: RS256 and ES256 keys from PEM files", .serialized)
struct PublicKeyAuthTests {
    private func pem(_ key: UnsafeMutableRawPointer) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = sbt_public_pem(key, &buf, buf.count)
        precondition(n > 0)
        return String(decoding: buf[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func sign(_ header: String, _ claims: String, _ key: UnsafeMutableRawPointer) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        var sig = [UInt8](repeating: 0, count: 1024)
        let bytes = Array(input.utf8)
        let n = sbt_sign_sha256(key, bytes, bytes.count, &sig, sig.count)
        precondition(n > 0)
        return input + "." + Base64URL.encode(sig[0..<Int(n)])
    }

    @Test("tokens signed with RS256 and ES256 authenticate; HS256 is refused when not configured", arguments: backends)
    func publicKeys(_ backend: IOBackendKind) throws {
        let rsa = sbt_generate_rsa(2048)!, ec = sbt_generate_ec("P-256")!
        defer { sbt_key_free(rsa); sbt_key_free(ec) }
        let files = ["/keys/rs.pem": pem(rsa), "/keys/es.pem": pem(ec)]
        let (options, enabled) = try BroadcasterOptions.parse([
            "broadcaster_enabled": "true", "broadcaster_api_keys": "test-api-key",
            "broadcaster_jwt_rs256_public_key_file": "/keys/rs.pem", "broadcaster_jwt_es256_public_key_file": "/keys/es.pem",
        ], readFile: { files[$0] })
        #expect(enabled && options.verifier?.keys.count == 2)
        let server = try BCServer(backend: backend) { $0 = options; $0.expiryCheckIntervalMilliseconds = 50 }
        let now = server.clock.seconds
        let claims = #"{"sub":"u","aud":"broadcaster","exp":\#(now + 600),"authorizedChannels":["test-channel"],"scope":["subscribe"]}"#
        for (header, key) in [(#"{"alg":"RS256","typ":"JWT"}"#, rsa), (#"{"alg":"ES256","typ":"JWT"}"#, ec)] {
            let c = try server.client()
            try c.expectResult(try c.call("auth", #"{"token":"\#(sign(header, claims, key))"}"#), #"{"success":true}"#)
        }
        let c = try server.client()
        try c.expectError(try c.call("auth", #"{"token":"\#(server.token())"}"#), "Unauthenticated", "signing method HS256 is not allowed")
    }
}
