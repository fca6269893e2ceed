import Testing
@testable import SwitchboardJWT

private typealias F = Fixtures

@Suite("JWT: accepted tokens, keys, base64url")
struct JWTVerifierTests {
    @Test func hs256Accepted() throws {
        let f = F.shared
        let claims = try f.hmacVerifier().verify(F.token(header: F.hs256Header, payload: F.claims(), f.hmacSigner), nowSeconds: F.now)
        #expect(claims == JWTClaims(subject: "user-1", expiresAtSeconds: F.now + 3600, issuedAtSeconds: F.now,
                                    authorizedChannels: ["news", "chat:room-1"], scope: ["subscribe", "publish"]))
    }

    @Test func rs256AndES256Accepted() throws {
        let f = F.shared
        let rsa = try f.rsaVerifier().verify(F.token(header: #"{"alg":"RS256","typ":"JWT"}"#, payload: F.claims(), .rsa(f.rsaPrivate)), nowSeconds: F.now)
        #expect(rsa.subject == "user-1")
        let ec = try f.ecVerifier().verify(F.token(header: #"{"alg":"ES256"}"#, payload: F.claims(), .ec(f.ecPrivate)), nowSeconds: F.now)
        #expect(ec.scope == ["subscribe", "publish"])
    }

    @Test func severalKeysAndKeyIDs() throws {
        let f = F.shared
        let verifier = JWTVerifier(keys: [
            try JWTKey(hmacSecret: f.secret, keyID: "h1"),
            try JWTKey(algorithm: .rs256, publicKeyPEM: f.rsaOtherPEM, keyID: "old"),
            try JWTKey(algorithm: .rs256, publicKeyPEM: f.rsaPEM, keyID: "new"),
        ])
        let signed = F.token(header: #"{"alg":"RS256","kid":"new"}"#, payload: F.claims(), .rsa(f.rsaPrivate))
        #expect(try verifier.verify(signed, nowSeconds: F.now).subject == "user-1")
        let wrongKid = F.token(header: #"{"alg":"RS256","kid":"old"}"#, payload: F.claims(), .rsa(f.rsaPrivate))
        #expect(throws: JWTError.badSignature) { try verifier.verify(wrongKid, nowSeconds: F.now) }
        let noKid = F.token(header: #"{"alg":"RS256"}"#, payload: F.claims(), .rsa(f.rsaPrivate))
        #expect(try verifier.verify(noKid, nowSeconds: F.now).subject == "user-1")
    }

    @Test("leeway edges: exp/nbf/iat exactly 30 s off are accepted")
    func leewayEdges() throws {
        let f = F.shared
        let v = f.hmacVerifier()
        for overrides in [[("exp", String(F.now - 30))], [("nbf", String(F.now + 30))], [("iat", String(F.now + 30))],
                          [("exp", "\(F.now + 10).75")], [("aud", #"["x","broadcaster"]"#)]] {
            _ = try v.verify(F.token(header: F.hs256Header, payload: F.claims(overrides), f.hmacSigner), nowSeconds: F.now)
        }
        let strict = f.hmacVerifier(.init(leewaySeconds: 0))
        #expect(throws: JWTError.expired) {
            try strict.verify(F.token(header: F.hs256Header, payload: F.claims([("exp", String(F.now - 1))]), f.hmacSigner), nowSeconds: F.now)
        }
    }

    @Test func keyConstruction() throws {
        let f = F.shared
        #expect(throws: JWTKey.KeyError.secretTooShort) { try JWTKey(hmacSecret: Array("short".utf8)) }
        #expect(throws: JWTKey.KeyError.secretTooShort) { try JWTKey(hmacSecret: [], allowShortSecret: true) }
        _ = try JWTKey(hmacSecret: Array("test-secret".utf8), allowShortSecret: true)
        #expect(throws: JWTKey.KeyError.wrongKeyType) { try JWTKey(algorithm: .rs256, publicKeyPEM: f.ecPEM) }
        #expect(throws: JWTKey.KeyError.wrongKeyType) { try JWTKey(algorithm: .es256, publicKeyPEM: f.rsaPEM) }
        #expect(throws: JWTKey.KeyError.notAPublicKeyPEM) { try JWTKey(algorithm: .rs256, publicKeyPEM: "not a pem") }
        let small = F.pem(sbtGenerateRSA(1024))
        #expect(throws: JWTKey.KeyError.wrongKeyType) { try JWTKey(algorithm: .rs256, publicKeyPEM: small) }
        let p384 = F.pem(sbtGenerateEC("P-384"))
        #expect(throws: JWTKey.KeyError.wrongKeyType) { try JWTKey(algorithm: .es256, publicKeyPEM: p384) }
    }

    @Test func base64url() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(Array(text.utf8)) == bytes)
        }
        #expect(Base64URL.decode(Array("_-8".utf8)) == [0xFF, 0xEF])
        for bad in ["A", "AAAAA", "AA==", "A/AA", "A+AA", "AB", "AAB", " AAA", "AA\nA"] {
            #expect(Base64URL.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
    }
}

import CJWTTestSupport
private func sbtGenerateRSA(_ bits: UInt32) -> UnsafeMutableRawPointer { sbt_generate_rsa(bits)! }
private func sbtGenerateEC(_ curve: String) -> UnsafeMutableRawPointer { sbt_generate_ec(curve)! }

@Suite("API keys")
struct APIKeySetTests {
    @Test func membership() {
        let keys = APIKeySet(["test-api-key", "", "second|key"])
        #expect(keys.count == 2)
        #expect(keys.contains(Array("test-api-key".utf8)))
        #expect(keys.contains(Array("second|key".utf8)))
        for bad in ["", "test-api-ke", "test-api-key ", "TEST-API-KEY", "second"] {
            #expect(!keys.contains(Array(bad.utf8)), "\(bad)")
        }
        #expect(APIKeySet([]).isEmpty)
        #expect(!APIKeySet([""]).contains([]))
    }

    @Test func authorizationHeader() {
        func c(_ s: String) -> String { String(decoding: APIKeySet.credential(fromAuthorization: Array(s.utf8)), as: UTF8.self) }
        #expect(c("Bearer k1") == "k1")
        #expect(c("k1") == "k1")
        #expect(c("bearer k1") == "bearer k1")
        #expect(c("Bearer ") == "")
        #expect(c("Bearer  k") == " k")
    }
}
