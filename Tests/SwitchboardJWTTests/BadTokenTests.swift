import Testing
@testable import SwitchboardJWT
import SwitchboardDocMirror

/// One refused token: how it is built, which verifier sees it, and the refusal.
struct BadToken: CustomTestStringConvertible, Sendable {
    enum Verifier: String, Sendable { case hmac = "HS256 secret", rsa = "RS256 key", ec = "ES256 key" }
    var name: String
    var verifier: Verifier
    var expected: JWTError
    var make: @Sendable (Fixtures) -> String
    var testDescription: String { name }
}

private typealias F = Fixtures
private let h = F.hs256Header

private func row(_ name: String, _ verifier: BadToken.Verifier, _ expected: JWTError,
                 _ make: @escaping @Sendable (Fixtures) -> String) -> BadToken {
    BadToken(name: name, verifier: verifier, expected: expected, make: make)
}

private func row(_ name: String, _ expected: JWTError, _ make: @escaping @Sendable (Fixtures) -> String) -> BadToken {
    BadToken(name: name, verifier: .hmac, expected: expected, make: make)
}

/// Every verification rule, violated once. Mirrored in Sources/SwitchboardJWT/BAD_TOKENS.md.
let badTokens: [BadToken] = [
    // Signature
    row("signed with another secret", .badSignature) { _ in F.token(header: h, payload: F.claims(), .hmac(digest: "SHA256", key: Array("another-secret-another-secret-xx".utf8))) },
    row("one signature bit flipped", .badSignature) { f in
        var parts = F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").map(String.init)
        var sig = Base64URL.decode(Array(parts[2].utf8))!
        sig[0] ^= 1
        parts[2] = Base64URL.encode(sig)
        return parts.joined(separator: ".")
    },
    row("payload changed after signing", .badSignature) { f in
        let good = F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".")
        return [String(good[0]), F.b64(F.claims([("sub", #""admin""#)])), String(good[2])].joined(separator: ".")
    },
    row("HS256 signature truncated to 16 bytes", .badSignature) { f in
        F.token(header: h, payload: F.claims(), .bytes(Array(F.sign(Array((F.b64(h) + "." + F.b64(F.claims())).utf8), f.hmacSigner).prefix(16))))
    },
    row("empty signature with HS256", .badSignature) { _ in F.token(header: h, payload: F.claims(), .empty) },
    row("RS256 signed by another key", .rsa, .badSignature) { f in F.token(header: #"{"alg":"RS256"}"#, payload: F.claims(), .rsa(f.rsaOtherPrivate)) },
    row("ES256 signature of 63 bytes", .ec, .badSignature) { _ in F.token(header: #"{"alg":"ES256"}"#, payload: F.claims(), .bytes([UInt8](repeating: 7, count: 63))) },
    row("ES256 payload changed after signing", .ec, .badSignature) { f in
        let good = F.token(header: #"{"alg":"ES256"}"#, payload: F.claims(), .ec(f.ecPrivate)).split(separator: ".")
        return [String(good[0]), F.b64(F.claims([("exp", String(F.now + 999_999))])), String(good[2])].joined(separator: ".")
    },
    // Algorithm
    row("alg none, empty signature", .algorithmNotAllowed("none")) { _ in F.token(header: #"{"alg":"none"}"#, payload: F.claims(), .empty) },
    row("alg none with a signature", .algorithmNotAllowed("none")) { f in F.token(header: #"{"alg":"none"}"#, payload: F.claims(), f.hmacSigner) },
    row("alg None (case variant)", .algorithmNotAllowed("None")) { _ in F.token(header: #"{"alg":"None"}"#, payload: F.claims(), .empty) },
    row("alg HS384, correctly signed", .algorithmNotAllowed("HS384")) { f in F.token(header: #"{"alg":"HS384"}"#, payload: F.claims(), .hmac(digest: "SHA384", key: f.secret)) },
    row("alg HS512, correctly signed", .algorithmNotAllowed("HS512")) { f in F.token(header: #"{"alg":"HS512"}"#, payload: F.claims(), .hmac(digest: "SHA512", key: f.secret)) },
    row("alg RS256 against an HMAC-only verifier", .algorithmNotAllowed("RS256")) { f in F.token(header: #"{"alg":"RS256"}"#, payload: F.claims(), .rsa(f.rsaPrivate)) },
    row("alg ES256 against an HMAC-only verifier", .algorithmNotAllowed("ES256")) { f in F.token(header: #"{"alg":"ES256"}"#, payload: F.claims(), .ec(f.ecPrivate)) },
    row("HS256 keyed with the RS256 public key PEM (key confusion)", .rsa, .algorithmNotAllowed("HS256")) { f in
        F.token(header: h, payload: F.claims(), .hmac(digest: "SHA256", key: Array(f.rsaPEM.utf8)))
    },
    row("alg missing", .algorithmNotAllowed("missing")) { f in F.token(header: #"{"typ":"JWT"}"#, payload: F.claims(), f.hmacSigner) },
    row("alg not a string", .algorithmNotAllowed("missing")) { f in F.token(header: #"{"alg":256}"#, payload: F.claims(), f.hmacSigner) },
    row("crit header extension", .algorithmNotAllowed("crit")) { f in F.token(header: #"{"alg":"HS256","crit":["exp"]}"#, payload: F.claims(), f.hmacSigner) },
    // Time
    row("expired (exp 31 s ago, leeway 30 s)", .expired) { f in F.token(header: h, payload: F.claims([("exp", String(F.now - 31))]), f.hmacSigner) },
    row("not yet valid (nbf in 31 s)", .notYetValid) { f in F.token(header: h, payload: F.claims([("nbf", String(F.now + 31))]), f.hmacSigner) },
    row("issued in the future (iat in 31 s)", .issuedInFuture) { f in F.token(header: h, payload: F.claims([("iat", String(F.now + 31))]), f.hmacSigner) },
    // Audience
    row("wrong aud", .wrongAudience) { f in F.token(header: h, payload: F.claims([("aud", #""other""#)]), f.hmacSigner) },
    row("aud array without broadcaster", .wrongAudience) { f in F.token(header: h, payload: F.claims([("aud", #"["a","b"]"#)]), f.hmacSigner) },
    row("aud missing", .wrongAudience) { f in F.token(header: h, payload: F.claims([("aud", nil)]), f.hmacSigner) },
    row("aud differing in case", .wrongAudience) { f in F.token(header: h, payload: F.claims([("aud", #""Broadcaster""#)]), f.hmacSigner) },
    // Claims
    row("exp missing", .missingClaim("exp")) { f in F.token(header: h, payload: F.claims([("exp", nil)]), f.hmacSigner) },
    row("sub missing", .missingClaim("sub")) { f in F.token(header: h, payload: F.claims([("sub", nil)]), f.hmacSigner) },
    row("sub empty", .missingClaim("sub")) { f in F.token(header: h, payload: F.claims([("sub", #""""#)]), f.hmacSigner) },
    row("authorizedChannels missing", .missingClaim("authorizedChannels")) { f in F.token(header: h, payload: F.claims([("authorizedChannels", nil)]), f.hmacSigner) },
    row("authorizedChannels empty", .missingClaim("authorizedChannels")) { f in F.token(header: h, payload: F.claims([("authorizedChannels", "[]")]), f.hmacSigner) },
    row("exp as a string", .invalidClaim("exp")) { f in F.token(header: h, payload: F.claims([("exp", #""9999999999""#)]), f.hmacSigner) },
    row("exp beyond 2^53", .invalidClaim("exp")) { f in F.token(header: h, payload: F.claims([("exp", "1e300")]), f.hmacSigner) },
    row("sub as a number", .invalidClaim("sub")) { f in F.token(header: h, payload: F.claims([("sub", "42")]), f.hmacSigner) },
    row("scope as a string", .invalidClaim("scope")) { f in F.token(header: h, payload: F.claims([("scope", #""publish""#)]), f.hmacSigner) },
    row("authorizedChannels holding a number", .invalidClaim("authorizedChannels")) { f in F.token(header: h, payload: F.claims([("authorizedChannels", #"["a",1]"#)]), f.hmacSigner) },
    // Encoding
    row("base64 padding", .badBase64URL) { f in
        let t = F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").map(String.init)
        return t[0] + "=." + t[1] + "." + t[2]
    },
    row("standard-alphabet '+' in a segment", .badBase64URL) { f in
        let t = F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").map(String.init)
        return t[0] + ".+" + String(t[1].dropFirst()) + "." + t[2]
    },
    row("non-canonical trailing bits", .badBase64URL) { f in
        // "e30" is "{}"; "e31" decodes to the same bytes with non-zero unused bits.
        "e31." + F.b64(F.claims()) + ".AAAA"
    },
    row("segment length 4n+1", .badBase64URL) { _ in "eyJhbGciOiJIUzI1NiJ9A." + F.b64(F.claims()) + ".AAAA" },
    row("whitespace inside a segment", .badBase64URL) { f in
        let t = F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").map(String.init)
        return t[0] + "." + String(t[1].prefix(8)) + " " + String(t[1].dropFirst(8)) + "." + t[2]
    },
    row("two segments", .malformed) { f in F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").prefix(2).joined(separator: ".") },
    row("four segments", .malformed) { f in F.token(header: h, payload: F.claims(), f.hmacSigner) + ".AAAA" },
    row("empty header segment", .malformed) { f in "." + F.token(header: h, payload: F.claims(), f.hmacSigner).split(separator: ".").dropFirst().joined(separator: ".") },
    row("empty string", .malformed) { _ in "" },
    row("oversized token (8193 bytes)", .tooLarge) { f in
        let t = F.token(header: h, payload: F.claims([("pad", "\"" + String(repeating: "x", count: 6000) + "\"")]), f.hmacSigner)
        return t + String(repeating: "A", count: max(0, 8193 - t.count))
    },
    // JSON
    row("payload is a JSON array", .notAnObject) { f in F.token(header: h, payload: "[1,2]", f.hmacSigner) },
    row("payload is a JSON string", .notAnObject) { f in F.token(header: h, payload: #""sub""#, f.hmacSigner) },
    row("header is a JSON array", .notAnObject) { f in F.token(header: #"["HS256"]"#, payload: F.claims(), f.hmacSigner) },
    row("payload with a trailing comma", .badJSON) { f in F.token(header: h, payload: F.claims() + ",", f.hmacSigner) },
    row("header with a comment", .badJSON) { f in F.token(header: #"{"alg":"HS256"/*x*/}"#, payload: F.claims(), f.hmacSigner) },
    row("payload nested too deeply", .badJSON) { f in
        F.token(header: h, payload: F.claims([("x", String(repeating: "[", count: 20) + String(repeating: "]", count: 20))]), f.hmacSigner)
    },
]

@Suite("JWT: bad tokens")
struct BadTokenTests {
    @Test func tableCoversEveryRule() {
        #expect(badTokens.count >= 45)
        #expect(Set(badTokens.map(\.name)).count == badTokens.count, "row names are unique")
    }

    @Test(arguments: badTokens)
    func refused(_ bad: BadToken) {
        let f = Fixtures.shared
        let verifier = switch bad.verifier {
        case .hmac: f.hmacVerifier()
        case .rsa: f.rsaVerifier()
        case .ec: f.ecVerifier()
        }
        let token = bad.make(f)
        #expect(throws: bad.expected) { try verifier.verify(token, nowSeconds: Fixtures.now) }
    }

    /// The Markdown copy for the docs must list exactly the table above.
    @Test func markdownMirrorsTable() throws {
        let rendered = renderBadTokensMarkdown()
        let onDisk = try DocMirror.committed("Sources/SwitchboardJWT/BAD_TOKENS.md", rendered: rendered, regenerate: "REGENERATE_BAD_TOKENS")
        #expect(onDisk == rendered, "run the tests with REGENERATE_BAD_TOKENS=1 to rewrite BAD_TOKENS.md")
    }
}

func renderBadTokensMarkdown() -> String {
    var out = """
    # Refused tokens

    Every token below is refused by `JWTVerifier` (default configuration: audience
    `broadcaster`, leeway 30 s, at most 8192 bytes) with the given error. Generated from
    `Tests/SwitchboardJWTTests/BadTokenTests.swift` (`markdownMirrorsTable` fails when they drift
    apart). Keys are generated at test time; none is committed.

    | Token | Verifier configured with | Refusal |
    |---|---|---|

    """
    for bad in badTokens {
        out += "| \(bad.name) | \(bad.verifier.rawValue) | \(bad.expected) |\n"
    }
    return out
}
