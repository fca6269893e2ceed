import Testing
import SwitchboardHTTP
@testable import SwitchboardWebSocket

private let key = "dGhlIHNhbXBsZSBub25jZQ=="

private func request(
    method: String = "GET", version: HTTPVersion = .http1_1, drop: Set<String> = [], extra: [(String, String)] = [],
    replace: [String: String] = [:]
) -> HTTPRequest {
    var pairs: [(String, String)] = [
        ("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
    ]
    pairs = pairs.filter { !drop.contains($0.0) }.map { (name, value) in (name, replace[name] ?? value) }
    pairs += extra
    return HTTPRequest(method: method, url: "/chat", version: version, headers: HTTPHeaders(pairs))
}

private func accepted(_ result: WebSocketHandshakeResult) -> (HTTPResponse, PerMessageDeflateParameters?)? {
    if case .accept(let response, let deflate) = result { return (response, deflate) }
    return nil
}

private func rejectedStatus(_ result: WebSocketHandshakeResult) -> Int? {
    if case .reject(let response) = result { return response.status }
    return nil
}

@Suite struct HandshakeTests {
    @Test func rfcExampleAcceptValue() {
        #expect(WebSocketHandshake.acceptValue(forKey: key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func acceptsValidRequest() throws {
        let (response, deflate) = try #require(accepted(WebSocketHandshake.negotiate(request(), options: .init(), subprotocol: nil)))
        #expect(response.status == 101)
        #expect(response.headers["Upgrade"] == "websocket")
        #expect(response.headers["Connection"] == "Upgrade")
        #expect(response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(response.headers["Sec-WebSocket-Protocol"] == nil)
        #expect(response.headers["Sec-WebSocket-Extensions"] == nil)
        #expect(deflate == nil)
    }

    struct Rejection: Sendable, CustomTestStringConvertible {
        var name: String
        var method = "GET"
        var version: HTTPVersion = .http1_1
        var drop: Set<String> = []
        var replace: [String: String] = [:]
        var extra: [(String, String)] = []
        var origins: [String]? = nil
        var status: Int
        var testDescription: String { name }
    }

    static let rejections: [Rejection] = [
        Rejection(name: "missing key", drop: ["Sec-WebSocket-Key"], status: 400),
        Rejection(name: "key of 15 bytes", replace: ["Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25j"], status: 400),
        Rejection(name: "key of 17 bytes", replace: ["Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZXg="], status: 400),
        Rejection(name: "key not base64", replace: ["Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25j*Q=="], status: 400),
        Rejection(name: "key non-canonical", replace: ["Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZR=="], status: 400),
        Rejection(name: "two keys", extra: [("Sec-WebSocket-Key", key)], status: 400),
        Rejection(name: "version 8", replace: ["Sec-WebSocket-Version": "8"], status: 426),
        Rejection(name: "missing version", drop: ["Sec-WebSocket-Version"], status: 400),
        Rejection(name: "version 13 twice", extra: [("sec-websocket-version", "13")], status: 426),
        Rejection(name: "second key in other case", extra: [("SEC-WEBSOCKET-KEY", key)], status: 400),
        Rejection(name: "version and a lowercase empty one", extra: [("sec-websocket-version", "")], status: 426),
        Rejection(name: "missing Upgrade", drop: ["Upgrade"], status: 400),
        Rejection(name: "Upgrade not websocket", replace: ["Upgrade": "h2c"], status: 400),
        Rejection(name: "Connection without upgrade", replace: ["Connection": "keep-alive"], status: 400),
        Rejection(name: "POST", method: "POST", status: 400),
        Rejection(name: "HTTP/1.0", version: .http1_0, status: 400),
        Rejection(name: "origin missing", origins: ["https://a.example"], status: 403),
        Rejection(name: "origin not allowed", extra: [("Origin", "https://evil.example")], origins: ["https://a.example"], status: 403),
    ]

    @Test(arguments: rejections)
    func rejects(_ row: Rejection) {
        let result = WebSocketHandshake.negotiate(
            request(method: row.method, version: row.version, drop: row.drop, extra: row.extra, replace: row.replace),
            options: .init(allowedOrigins: row.origins), subprotocol: nil)
        #expect(rejectedStatus(result) == row.status)
        if case .reject(let response) = result {
            #expect(!response.body.isEmpty)
            if row.status == 426 { #expect(response.headers["Sec-WebSocket-Version"] == "13") }
        }
    }

    @Test func originAllowedCaseInsensitive() {
        let result = WebSocketHandshake.negotiate(
            request(extra: [("Origin", "HTTPS://A.example")]), options: .init(allowedOrigins: ["https://a.example"]), subprotocol: nil)
        #expect(accepted(result) != nil)
    }

    @Test func originMatchFoldsOnlyASCII() {
        func allowed(_ origin: String, _ list: [String]) -> Bool {
            accepted(WebSocketHandshake.negotiate(
                request(extra: [("Origin", origin)]), options: .init(allowedOrigins: list), subprotocol: nil)) != nil
        }
        #expect(allowed("HTTPS://A.EXAMPLE", ["https://a.example"]))
        #expect(!allowed("https://\u{C9}.example", ["https://\u{E9}.example"]), "É and é differ by 0x20 in their last byte")
        #expect(!allowed("https://a.example", ["https://a.exampl"]))
        #expect(!allowed("https://a.exampl", ["https://a.example"]))
        #expect(!allowed("https://a.example", []))
        #expect(allowed("https://\u{E9}.example", ["https://x.example", "https://\u{E9}.EXAMPLE"]))
    }

    /// base64(SHA-1(key + GUID)), from Python's hashlib and base64 (the RFC's example is above).
    @Test(arguments: [
        ("AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="),
        ("/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="),
        ("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
        ("", "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w="),
        ("abc", "zwKd5BnoWxQ6GxTxxSmBSHGHX9M="),
    ])
    func acceptValues(_ key: String, _ expected: String) {
        #expect(WebSocketHandshake.acceptValue(forKey: key) == expected)
    }

    /// Every byte at every position of a valid key, against the definition: 24 bytes, 22 of the
    /// base64 alphabet then "==", the 22nd character's low 4 bits zero.
    @Test func keyValidityAtEveryPositionAndByte() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        func reference(_ bytes: [UInt8]) -> Bool {
            guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
            for index in 0..<22 {
                guard let value = alphabet.firstIndex(of: bytes[index]) else { return false }
                if index == 21 && value & 0x0F != 0 { return false }
            }
            return true
        }
        let valid = Array(key.utf8)
        #expect(WebSocketHandshake.isValidKey(key))
        var accepted = 0
        for position in 0..<24 {
            for byte in 0...255 {
                var bytes = valid
                bytes[position] = UInt8(byte)
                let candidate = String(decoding: bytes, as: UTF8.self)  // a lone byte >= 0x80 becomes U+FFFD
                let expected = reference(Array(candidate.utf8))
                #expect(WebSocketHandshake.isValidKey(candidate) == expected, "byte \(byte) at \(position)")
                if expected { accepted += 1 }
            }
        }
        // 21 positions x 64 characters, 4 characters at position 21 (A, Q, g, w), and "=" itself
        // at positions 22 and 23.
        #expect(accepted == 21 * 64 + 4 + 2)
        #expect(!WebSocketHandshake.isValidKey(key + "="))
        #expect(!WebSocketHandshake.isValidKey(String(key.dropLast())))
        #expect(!WebSocketHandshake.isValidKey(""))
    }

    @Test func keyAndVersionUnderAnyCase() {
        let result = WebSocketHandshake.negotiate(
            request(drop: ["Sec-WebSocket-Key", "Sec-WebSocket-Version"],
                    extra: [("sec-websocket-key", key), ("SEC-WEBSOCKET-VERSION", "13")]),
            options: .init(), subprotocol: nil)
        #expect(accepted(result)?.0.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func upgradeTokenCaseInsensitive() {
        let result = WebSocketHandshake.negotiate(
            request(replace: ["Upgrade": "WebSocket", "Connection": "UPGRADE"]), options: .init(), subprotocol: nil)
        #expect(accepted(result) != nil)
    }

    @Test func subprotocols() throws {
        let req = request(extra: [("Sec-WebSocket-Protocol", "chat, superchat"), ("Sec-WebSocket-Protocol", " v2 ")])
        #expect(WebSocketHandshake.offeredSubprotocols(req) == ["chat", "superchat", "v2"])
        let (chosen, _) = try #require(accepted(WebSocketHandshake.negotiate(req, options: .init(), subprotocol: "superchat")))
        #expect(chosen.headers["Sec-WebSocket-Protocol"] == "superchat")
        let (ignored, _) = try #require(accepted(WebSocketHandshake.negotiate(req, options: .init(), subprotocol: "mqtt")))
        #expect(ignored.headers["Sec-WebSocket-Protocol"] == nil)
    }

    struct DeflateRow: Sendable, CustomTestStringConvertible {
        var offer: [String]
        var response: String?
        var parameters: PerMessageDeflateParameters?
        var testDescription: String { offer.joined(separator: " | ") }
    }

    static let deflateRows: [DeflateRow] = [
        DeflateRow(offer: ["permessage-deflate"], response: "permessage-deflate", parameters: .init()),
        DeflateRow(offer: ["permessage-deflate; client_max_window_bits"], response: "permessage-deflate", parameters: .init()),
        DeflateRow(offer: ["permessage-deflate; client_max_window_bits=10"],
                   response: "permessage-deflate; client_max_window_bits=10", parameters: .init(clientMaxWindowBits: 10)),
        DeflateRow(offer: ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                   response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                   parameters: .init(serverNoContextTakeover: true, clientNoContextTakeover: true)),
        DeflateRow(offer: ["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8"],
                   response: "permessage-deflate; client_no_context_takeover; server_max_window_bits=8",
                   parameters: .init(clientNoContextTakeover: true, serverMaxWindowBits: 8)),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits=15"],
                   response: "permessage-deflate; server_max_window_bits=15", parameters: .init()),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits=\"10\""],
                   response: "permessage-deflate; server_max_window_bits=10", parameters: .init(serverMaxWindowBits: 10)),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits=7, permessage-deflate"],
                   response: "permessage-deflate", parameters: .init()),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits=16"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; server_max_window_bits=09"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; client_max_window_bits=20"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; foo=1"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-deflate; server_no_context_takeover=1"], response: nil, parameters: nil),
        DeflateRow(offer: ["x-webkit-deflate-frame"], response: nil, parameters: nil),
        DeflateRow(offer: ["permessage-bzip2", "permessage-deflate; client_max_window_bits=9"],
                   response: "permessage-deflate; client_max_window_bits=9", parameters: .init(clientMaxWindowBits: 9)),
        DeflateRow(offer: ["Permessage-Deflate; Server_No_Context_Takeover"],
                   response: "permessage-deflate; server_no_context_takeover", parameters: .init(serverNoContextTakeover: true)),
    ]

    @Test(arguments: deflateRows)
    func deflateNegotiation(_ row: DeflateRow) throws {
        let req = request(extra: row.offer.map { ("Sec-WebSocket-Extensions", $0) })
        let (response, deflate) = try #require(accepted(WebSocketHandshake.negotiate(req, options: .init(), subprotocol: nil)))
        #expect(response.headers["Sec-WebSocket-Extensions"] == row.response)
        #expect(deflate == row.parameters)
    }

    /// Issue 17: with our context takeover off, every accepted offer is answered with
    /// server_no_context_takeover (RFC 7692 §7.1.1.1 lets a server add it unasked); the rest of
    /// the answer is what the client's offer asked for.
    @Test(arguments: [
        ("permessage-deflate", "permessage-deflate; server_no_context_takeover",
         PerMessageDeflateParameters(serverNoContextTakeover: true)),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover",
         PerMessageDeflateParameters(serverNoContextTakeover: true)),
        ("permessage-deflate; client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         PerMessageDeflateParameters(serverNoContextTakeover: true, clientNoContextTakeover: true)),
        ("permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
         PerMessageDeflateParameters(serverNoContextTakeover: true, serverMaxWindowBits: 10)),
    ])
    func deflateWithoutServerContextTakeover(offer: String, answer: String, parameters: PerMessageDeflateParameters) throws {
        let req = request(extra: [("Sec-WebSocket-Extensions", offer)])
        let options = WebSocketHandshakeOptions(serverContextTakeover: false)
        let (response, deflate) = try #require(accepted(WebSocketHandshake.negotiate(req, options: options, subprotocol: nil)))
        #expect(response.headers["Sec-WebSocket-Extensions"] == answer)
        #expect(deflate == parameters)
    }

    @Test func deflateDisabled() throws {
        let req = request(extra: [("Sec-WebSocket-Extensions", "permessage-deflate")])
        let (response, deflate) = try #require(accepted(WebSocketHandshake.negotiate(req, options: .init(enablePerMessageDeflate: false), subprotocol: nil)))
        #expect(response.headers["Sec-WebSocket-Extensions"] == nil)
        #expect(deflate == nil)
    }
}
