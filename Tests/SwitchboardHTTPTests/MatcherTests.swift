import Testing
@testable import SwitchboardHTTP

// The byte-loop matchers (header names, token lists, the writer's checks) against plain
// reference definitions, over every byte pair and every small combination: ASCII letters fold,
// nothing else does (a non-ASCII byte never matches an ASCII letter, and 0xC1 is not 'A' | 0x80).

/// RFC 9110 names are ASCII, case-insensitive: A-Z and a-z fold, every other byte must be equal.
private func referenceFold(_ b: UInt8) -> UInt8 { (0x41...0x5A).contains(b) ? b + 0x20 : b }

private func referenceEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { referenceFold($0) == referenceFold($1) }
}

private func referenceEquals(_ a: String, _ b: String) -> Bool { referenceEquals(Array(a.utf8), Array(b.utf8)) }

/// RFC 9110 §5.6.1: split at commas, trim SP and HTAB, ignore empty elements.
private func referenceContainsToken(_ token: String, in value: String) -> Bool {
    value.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).contains { element in
        let trimmed = Array(element).drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
        return !trimmed.isEmpty && referenceEquals(Array(trimmed), Array(token.utf8))
    }
}

/// Short strings that differ from "upgrade"/"Connection" in one of the ways that must not match.
private let pieces = [
    "", "a", "A", "z", "Z", "@", "[", "`", "{", "-", "é", "É", "Á", "á", "\u{212A}", "k", "K",
]

@Suite struct MatcherTests {
    @Test func everyBytePairFoldsOnlyASCIILetters() {
        for p in 0...255 {
            for q in 0...255 {
                let x = [UInt8(p)], y = [UInt8(q)]
                let got = x.withUnsafeBufferPointer { a in y.withUnsafeBufferPointer { b in ASCII.equalsIgnoringCase(a, b) } }
                #expect(got == referenceEquals(x, y), "bytes \(p) and \(q)")
            }
        }
    }

    @Test func everyByteAgainstLowercasedLiterals() {
        for p in 0...255 {
            let x = [UInt8(p)]
            for literal: StaticString in ["a", "z", "-", "@", "`", "{"] {
                let expected = referenceFold(UInt8(p)) == literal.utf8Start.pointee
                #expect(x.withUnsafeBufferPointer { ASCII.equalsLowercased($0, 0..<1, literal) } == expected, "byte \(p) vs \(literal)")
            }
        }
    }

    @Test func stringsOfUpToThreePieces() {
        var strings: [String] = []
        for a in pieces { for b in pieces { for c in ["", "a", "A", "é", "É"] { strings.append(a + b + c) } } }
        for x in strings {
            for y in strings {
                #expect(ASCII.caseInsensitiveEquals(x, y) == referenceEquals(x, y), "\(x.debugDescription) vs \(y.debugDescription)")
            }
        }
    }

    @Test func longAndPrefixNames() {
        let name = "Sec-WebSocket-Extensions"
        #expect(ASCII.caseInsensitiveEquals(name, "sec-websocket-extensions"))
        #expect(ASCII.caseInsensitiveEquals(name, "SEC-WEBSOCKET-EXTENSIONS"))
        #expect(!ASCII.caseInsensitiveEquals(name, "Sec-WebSocket-Extension"))
        #expect(!ASCII.caseInsensitiveEquals(name, "Sec-WebSocket-Extensions "))
        #expect(!ASCII.caseInsensitiveEquals("Sec-WebSocket-Key", "Sec-WebSocket-Kez"))
        #expect(!ASCII.caseInsensitiveEquals("Sec_WebSocket_Key", "Sec-WebSocket-Key"))
        // A long (heap) string against a small one with the same bytes in other cases.
        let long = String(repeating: "aBcD", count: 50)
        #expect(ASCII.caseInsensitiveEquals(long, long.uppercased()))
        #expect(!ASCII.caseInsensitiveEquals(long, String(long.uppercased().dropLast()) + "E"))
    }

    @Test func namesLookedUpOverEveryCaseMix() {
        // Every case mix of "Te" against fields whose names differ by one byte or one length.
        let fieldNames = ["te", "TE", "tE", "Te", "t", "tee", "T\u{E9}", "t-", "ta", "\u{C9}", "te "]
        var headers = HTTPHeaders()
        for (index, name) in fieldNames.enumerated() { headers.add(name: name, value: "v\(index)") }
        for wanted in ["te", "TE", "Te", "tE", "t", "tee", "T\u{E9}", "t\u{C9}", "", "x"] {
            let expected = fieldNames.indices.filter { referenceEquals(fieldNames[$0], wanted) }.map { "v\($0)" }
            #expect(headers.values(for: wanted) == expected, "\(wanted.debugDescription)")
            #expect(headers[wanted] == expected.first, "\(wanted.debugDescription)")
            #expect(headers.contains(name: wanted) == !expected.isEmpty, "\(wanted.debugDescription)")
            #expect(headers.singleValue(for: wanted) == (expected.count == 1 ? expected[0] : nil), "\(wanted.debugDescription)")
        }
    }

    @Test func tokenListsOfUpToThreeElements() {
        let elements = [
            "", " ", "\t", "upgrade", "Upgrade", "UPGRADE", " upgrade", "upgrade\t", " \tUpGrAdE \t", "upgrad", "upgrades",
            "xupgrade", "up grade", "\u{FA}pgrade", "Upgr\u{C1}de", "upgrade;q=1", "websocket",
        ]
        var checked = 0
        for a in elements {
            for b in elements {
                for c in ["", " ", "upgrade", "Upgrade ", "upgradé"] {
                    for value in [a, a + "," + b, a + "," + b + "," + c, "," + a + ",," + b] {
                        let headers: HTTPHeaders = ["Connection": value]
                        let expected = referenceContainsToken("upgrade", in: value)
                        #expect(headers.containsToken("upgrade", in: "Connection") == expected, "\(value.debugDescription)")
                        #expect(headers.containsToken("UPGRADE", in: "connection") == expected, "\(value.debugDescription)")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == elements.count * elements.count * 5 * 4)
    }

    @Test func tokenInAnyOfSeveralFieldsAndOnlyUnderItsName() {
        let headers = HTTPHeaders([
            ("Connection", "keep-alive"), ("X-Connection", "upgrade"), ("Connectio", "upgrade"), ("CONNECTION", " , Upgrade"),
        ])
        #expect(headers.containsToken("upgrade", in: "Connection"))
        #expect(headers.containsToken("keep-alive", in: "connection"))
        #expect(!headers.containsToken("upgrade", in: "Connections"))
        #expect(!headers.containsToken("", in: "Connection"), "an empty element is never a token")
        #expect(!headers.containsToken("upgrade", in: "C\u{F3}nnection"))
        let alone: HTTPHeaders = ["Connection": "keep-alive"]
        #expect(!alone.containsToken("upgrade", in: "Connection"))
    }

    @Test func writerDropsUnsafeAndFramingFieldsInAnyCase() {
        func written(_ headers: HTTPHeaders, status: Int = 200) -> String {
            var buffer: [UInt8] = []
            HTTPResponseWriter.write(HTTPResponse(status: status, headers: headers), keepAlive: true, into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
        let unsafe = HTTPHeaders([
            ("X-Ok", "1"), ("", "empty name"), ("Bad Name", "x"), ("N\u{E9}", "non-ASCII name"), ("X-Cr", "a\rb"),
            ("X-Lf", "a\nb"), ("X-Nul", "a\u{0}b"), ("X-Value", "caf\u{E9} \t ok"),
            ("content-LENGTH", "9"), ("Transfer-encoding", "chunked"), ("CONNECTION", "close"), ("Connectio", "kept"),
        ])
        #expect(written(unsafe) == "HTTP/1.1 200 OK\r\nX-Ok: 1\r\nX-Value: caf\u{E9} \t ok\r\nConnectio: kept\r\nContent-Length: 0\r\n\r\n")
        // A 101 keeps the caller's Connection (in any case), never the other framing fields.
        let switching = HTTPHeaders([("Upgrade", "websocket"), ("cOnNeCtIoN", "Upgrade"), ("Content-Length", "0")])
        #expect(written(switching, status: 101) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\ncOnNeCtIoN: Upgrade\r\n\r\n")
    }

    /// The head is written into room sized by a bound and trimmed: every decimal width, a
    /// negative and an extreme status, long fields, many fields, an existing buffer before it.
    @Test func writerHeadsOfEverySize() {
        func written(_ r: HTTPResponse, prefix: [UInt8] = [], keepAlive: Bool = true, date: String? = nil) -> String {
            var buffer = prefix
            HTTPResponseWriter.write(r, keepAlive: keepAlive, date: date, into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
        for (status, text) in [(0, "0"), (7, "7"), (-1, "-1"), (12_345, "12345"),
                               (Int.max, "9223372036854775807"), (Int.min, "-9223372036854775808")] {
            #expect(written(HTTPResponse(status: status)) == "HTTP/1.1 \(text) Unknown\r\nContent-Length: 0\r\n\r\n")
        }
        for length in [0, 1, 9, 10, 99, 100, 1_000, 65_536] {
            let body = [UInt8](repeating: 0x61, count: length)
            #expect(written(HTTPResponse(body: body)) == "HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\n\r\n" + String(repeating: "a", count: length))
        }
        let long = String(repeating: "v", count: 5_000)
        var many = HTTPHeaders()
        var expected = "HTTP/1.1 200 OK\r\n"
        for i in 0..<200 {
            many.add(name: "X-\(i)", value: i % 2 == 0 ? long : "\(i)")
            expected += "X-\(i): \(i % 2 == 0 ? long : "\(i)")\r\n"
        }
        expected += "Content-Length: 0\r\nConnection: close\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        #expect(written(HTTPResponse(headers: many), prefix: Array("before|".utf8), keepAlive: false,
                        date: "Sun, 06 Nov 1994 08:49:37 GMT") == "before|" + expected)
    }

    @Test func writerDropsAnUnsafeDate() {
        var buffer: [UInt8] = []
        HTTPResponseWriter.write(HTTPResponse(status: 204), keepAlive: true, date: "x\r\nSet-Cookie: a=b", into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == "HTTP/1.1 204 No Content\r\n\r\n")
    }
}

/// The names the parser hands out as literals (`CommonFieldNames`), each in its exact spelling
/// and in other spellings of the same length: every name comes out exactly as received.
@Suite struct CommonFieldNameTests {
    static let names = [
        "Host", "Accept", "Origin", "Cookie", "Pragma", "Upgrade", "Connection", "User-Agent", "Content-Type",
        "Cache-Control", "Authorization", "Content-Length", "Accept-Encoding", "Accept-Language", "Sec-WebSocket-Key",
        "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
    ]

    /// The exact name, all lowercase, all uppercase, the last letter's case flipped, and
    /// same-length names one byte off.
    static func spellings(_ name: String) -> [String] {
        let last = name.last!
        let flipped = String(name.dropLast()) + (last.isUppercase ? last.lowercased() : last.uppercased())
        return [name, name.lowercased(), name.uppercased(), flipped, String(name.dropLast()) + "x", "X" + String(name.dropFirst())]
    }

    @Test func literalOnlyForTheExactSpelling() {
        let listed = Set(Self.names)
        for name in Self.names {
            for spelling in Self.spellings(name) {
                let b = Array(spelling.utf8)
                let literal = b.withUnsafeBufferPointer { CommonFieldNames.literal($0, 0..<$0.count) }
                #expect(literal == (listed.contains(spelling) ? spelling : nil), "\(spelling)")
            }
        }
        // A range inside a larger buffer: the bytes around it are not part of the name.
        let b = Array("xHostx".utf8)
        #expect(b.withUnsafeBufferPointer { CommonFieldNames.literal($0, 1..<5) } == "Host")
        #expect(b.withUnsafeBufferPointer { CommonFieldNames.literal($0, 0..<4) } == nil)
    }

    @Test func parsedNamesAreAsReceived() throws {
        var lines = ["GET / HTTP/1.1"]
        var expected: [(String, String)] = []
        for (index, name) in Self.names.enumerated() where name != "Content-Length" {
            for (variant, spelling) in Self.spellings(name).enumerated() {
                // One Host only (a second is a 400), and it must be there.
                if name == "Host" && variant > 0 { continue }
                lines.append("\(spelling): v\(index).\(variant)")
                expected.append((spelling, "v\(index).\(variant)"))
            }
        }
        let request = try #require(single((lines + ["", ""]).joined(separator: "\r\n"), limits: HTTPLimits(maxHeaderCount: 200)))
        #expect(Array(request.headers.map(\.name)) == expected.map(\.0))
        #expect(Array(request.headers.map(\.value)) == expected.map(\.1))
    }

    /// The field list is reserved with the head buffer (8 ranges): any header-count limit, and
    /// more fields than the reservation, on one connection's parser request after request.
    @Test func fieldListBeyondItsReservation() throws {
        for limit in [-1, 0, 1, 8] {
            let request = try #require(single("GET / HTTP/1.0\r\n\r\n", limits: HTTPLimits(maxHeaderCount: limit)))
            #expect(request.headers.count == 0)
        }
        for count in [1, 7, 8, 9, 20] {
            let names = (0..<count).map { "X-\($0)" }
            let raw = "GET / HTTP/1.1\r\nHost: h\r\n" + names.map { "\($0): v\r\n" }.joined() + "\r\n"
            // Twice on one parser: the second request reuses the list's capacity.
            let events = parseWhole(bytes(raw + raw))
            #expect(events.count == 2)
            for event in events {
                let request = try #require(event.request)
                #expect(Array(request.headers.map(\.name)) == ["Host"] + names)
            }
        }
    }
}
