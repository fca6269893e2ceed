import COpenSSL
import SwitchboardHTTP

/// The server side of the opening handshake (RFC 6455 §4.2).
package enum WebSocketHandshake {
    /// Checks an upgrade request (RFC 6455 §4.2.1) and builds the response.
    ///
    /// Rejections: a malformed request (not GET, not HTTP/1.1, missing `Upgrade: websocket`,
    /// `Connection` without `upgrade`, missing `Sec-WebSocket-Version`, or a `Sec-WebSocket-Key`
    /// that is not base64 of exactly 16 bytes) gets 400 with a body naming the problem; RFC 6455
    /// names no status for these, and 405 would oblige an `Allow` header for a resource that may
    /// serve other methods. A version other than 13 gets 426 with `Sec-WebSocket-Version: 13`
    /// (§4.4). An `Origin` outside `options.allowedOrigins` gets 403 (§4.2.2).
    ///
    /// `subprotocol` is the application's choice; it is echoed only if the client offered it.
    /// permessage-deflate is accepted on the first acceptable offer (see ``PerMessageDeflateParameters``),
    /// with `server_no_context_takeover` added when `options.serverContextTakeover` is false.
    package static func negotiate(
        _ request: HTTPRequest, options: WebSocketHandshakeOptions, subprotocol: String?
    ) -> WebSocketHandshakeResult {
        func reject(_ status: Int, _ why: String, _ extra: HTTPHeaders = [:]) -> WebSocketHandshakeResult {
            var headers = extra
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            return .reject(HTTPResponse(status: status, headers: headers, body: why + "\n"))
        }
        let headers = request.headers
        guard request.method == "GET" else { return reject(400, "WebSocket upgrade requires GET") }
        guard request.version == .http1_1 else { return reject(400, "WebSocket upgrade requires HTTP/1.1") }
        guard headers.containsToken("websocket", in: "Upgrade") else {
            return reject(400, "missing Upgrade: websocket")
        }
        guard headers.containsToken("upgrade", in: "Connection") else {
            return reject(400, "Connection header does not contain upgrade")
        }
        // One pass per name, no array of values; none and several are told apart only on failure.
        guard let key = headers.singleValue(for: "Sec-WebSocket-Key"), isValidKey(key) else {
            return reject(400, "Sec-WebSocket-Key must be base64 of 16 bytes")
        }
        guard headers.singleValue(for: "Sec-WebSocket-Version") == "13" else {
            guard headers.contains(name: "Sec-WebSocket-Version") else { return reject(400, "missing Sec-WebSocket-Version") }
            return reject(426, "unsupported WebSocket version", ["Sec-WebSocket-Version": "13", "Upgrade": "websocket"])
        }
        if let allowed = options.allowedOrigins {
            guard let origin = headers["Origin"],
                  allowed.contains(where: { ASCII.caseInsensitiveEquals($0, origin) }) else {
                return reject(403, "origin not allowed")
            }
        }

        // Room for the optional protocol and extensions: one allocation, no literal's array.
        var response = HTTPHeaders(minimumCapacity: 5)
        response.add(name: "Upgrade", value: "websocket")
        response.add(name: "Connection", value: "Upgrade")
        response.add(name: "Sec-WebSocket-Accept", value: acceptValue(forKey: key))
        if let subprotocol, offeredSubprotocols(request).contains(subprotocol) {
            response.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
        }
        var deflate: PerMessageDeflateParameters?
        if options.enablePerMessageDeflate,
           var offer = DeflateOffer.firstAcceptable(headers.values(for: "Sec-WebSocket-Extensions")) {
            // Without context takeover we tell the client so (it may not have asked): its
            // decompressor then knows every message starts a fresh window.
            if !options.serverContextTakeover { offer.serverNoContextTakeover = true }
            deflate = offer.parameters
            response.add(name: "Sec-WebSocket-Extensions", value: offer.responseValue)
        }
        return .accept(response: HTTPResponse(status: 101, headers: response), deflate: deflate)
    }

    /// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
    /// The digest's input and output live on the stack: the String it returns is the only
    /// allocation (a key of 24 bytes makes a 28-byte answer, too long for a small string).
    package static func acceptValue(forKey key: String) -> String {
        var key = key
        return key.withUTF8 { keyBytes in
            let guid: StaticString = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            let inputCount = keyBytes.count + guid.utf8CodeUnitCount
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: inputCount) { input in
                if let base = keyBytes.baseAddress { input.baseAddress!.update(from: base, count: keyBytes.count) }
                (input.baseAddress! + keyBytes.count).update(from: guid.utf8Start, count: guid.utf8CodeUnitCount)
                // EVP_EncodeBlock writes 28 characters and a NUL for a 20-byte digest.
                return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { output in
                    let count = sb_sha1_base64(input.baseAddress, inputCount, output.baseAddress)
                    guard count == 28 else { return "" }
                    return String(unsafeUninitializedCapacity: 28) { text in
                        UnsafeMutableRawBufferPointer(text).copyMemory(from: UnsafeRawBufferPointer(start: output.baseAddress, count: 28))
                        return 28
                    }
                }
            }
        }
    }

    /// The client's offered subprotocols, in order (all `Sec-WebSocket-Protocol` fields, comma-split, trimmed).
    package static func offeredSubprotocols(_ request: HTTPRequest) -> [String] {
        var result: [String] = []
        for value in request.headers.values(for: "Sec-WebSocket-Protocol") {
            for part in value.split(separator: ",") {
                let trimmed = part.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
                if !trimmed.isEmpty { result.append(String(trimmed)) }
            }
        }
        return result
    }

    /// Base64 of exactly 16 bytes: 22 alphabet characters then "==", canonical (the unused low
    /// 4 bits of the 22nd character are zero).
    static func isValidKey(_ key: String) -> Bool {
        guard key.utf8.count == 24 else { return false }
        var key = key
        return key.withUTF8 { bytes in
            guard bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
            for index in 0..<22 {
                guard let value = base64Value(bytes[index]) else { return false }
                if index == 21 && value & 0x0F != 0 { return false }
            }
            return true
        }
    }

    private static func base64Value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }
}
