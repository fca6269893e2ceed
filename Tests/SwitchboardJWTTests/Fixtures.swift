import CJWTTestSupport
@testable import SwitchboardJWT

/// Keys generated once per test run with libcrypto (no key is committed), and token builders.
struct Fixtures: @unchecked Sendable {
    static let shared = Fixtures()

    /// A fixed clock: every table row is evaluated at this instant.
    static let now = 1_700_000_000

    let secret: [UInt8] = Array("0123456789abcdef0123456789abcdef-test".utf8)
    let rsaPrivate: UnsafeMutableRawPointer
    let rsaOtherPrivate: UnsafeMutableRawPointer
    let ecPrivate: UnsafeMutableRawPointer
    let rsaPEM: String
    let rsaOtherPEM: String
    let ecPEM: String

    private init() {
        rsaPrivate = sbt_generate_rsa(2048)!
        rsaOtherPrivate = sbt_generate_rsa(2048)!
        ecPrivate = sbt_generate_ec("P-256")!
        rsaPEM = Fixtures.pem(rsaPrivate)
        rsaOtherPEM = Fixtures.pem(rsaOtherPrivate)
        ecPEM = Fixtures.pem(ecPrivate)
    }

    static func pem(_ key: UnsafeMutableRawPointer) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = sbt_public_pem(key, &buf, buf.count)
        precondition(n > 0)
        return String(decoding: buf[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    enum Signer {
        case hmac(digest: String, key: [UInt8])
        case rsa(UnsafeMutableRawPointer)
        case ec(UnsafeMutableRawPointer)
        case empty
        case bytes([UInt8])
    }

    static func b64(_ s: String) -> String { Base64URL.encode(Array(s.utf8)) }

    /// `header.payload.signature` with JSON texts taken verbatim (so malformed JSON can be signed).
    static func token(header: String, payload: String, _ signer: Signer) -> String {
        let input = b64(header) + "." + b64(payload)
        return input + "." + Base64URL.encode(sign(Array(input.utf8), signer))
    }

    static func sign(_ input: [UInt8], _ signer: Signer) -> [UInt8] {
        switch signer {
        case .hmac(let digest, let key):
            var out = [UInt8](repeating: 0, count: 64)
            let n = sbt_hmac(digest, key, key.count, input, input.count, &out)
            precondition(n > 0)
            return Array(out[0..<Int(n)])
        case .rsa(let key), .ec(let key):
            var out = [UInt8](repeating: 0, count: 1024)
            let n = sbt_sign_sha256(key, input, input.count, &out, out.count)
            precondition(n > 0)
            return Array(out[0..<Int(n)])
        case .empty:
            return []
        case .bytes(let b):
            return b
        }
    }

    /// A valid claim set at `now`, with `overrides` replacing or (value nil) removing members.
    static func claims(_ overrides: [(String, String?)] = []) -> String {
        var members: [(String, String)] = [
            ("sub", #""user-1""#), ("aud", #""broadcaster""#), ("exp", String(now + 3600)), ("iat", String(now)),
            ("authorizedChannels", #"["news","chat:room-1"]"#), ("scope", #"["subscribe","publish"]"#),
        ]
        for (key, value) in overrides {
            members.removeAll { $0.0 == key }
            if let value { members.append((key, value)) }
        }
        return "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    static let hs256Header = #"{"alg":"HS256","typ":"JWT"}"#

    var hmacSigner: Signer { .hmac(digest: "SHA256", key: secret) }

    func hmacVerifier(_ configuration: JWTVerifier.Configuration = .init()) -> JWTVerifier {
        JWTVerifier(keys: [try! JWTKey(hmacSecret: secret)], configuration: configuration)
    }

    func rsaVerifier() -> JWTVerifier { JWTVerifier(keys: [try! JWTKey(algorithm: .rs256, publicKeyPEM: rsaPEM)]) }
    func ecVerifier() -> JWTVerifier { JWTVerifier(keys: [try! JWTKey(algorithm: .es256, publicKeyPEM: ecPEM)]) }
}
