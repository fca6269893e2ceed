import COpenSSL
import Foundation  // tests only: reads TLS_BAD_RECORDS.md to keep it in sync with the table
import SwitchboardDocMirror
import SwitchboardIO
import SwitchboardTestSupport
import Testing

/// Switchboard's own TLS 1.3 record layer (`tls13_records.c`, `sb_tls_set_own_records`) against
/// OpenSSL's client: the server takes records over from OpenSSL when the handshake completes,
/// and an unmodified OpenSSL client must read everything it seals (so keys, nonces, sequence
/// numbers after the tickets, padding and key updates are right), while everything a hostile
/// client can put in a record gets the alert RFC 8446 asks for.
@Suite("TLS 1.3 records made by Switchboard, read and written by OpenSSL's client")
struct TLSOwnRecordTests {
    @Test("HKDF-Expand-Label matches RFC 8448's trace (server handshake key and IV)")
    func expandLabelKnownAnswer() {
        let secret = hex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
        var key = [UInt8](repeating: 0, count: 16)
        var iv = [UInt8](repeating: 0, count: 12)
        #expect(sb_tls_test_expand_label_sha256(secret, secret.count, "key", &key, key.count) == 0)
        #expect(sb_tls_test_expand_label_sha256(secret, secret.count, "iv", &iv, iv.count) == 0)
        #expect(key == hex("3fce516009c21727d0f2e4e86ee403bc"))
        #expect(iv == hex("5d313eb2671276ee13000b30"))
    }

    @Test("messages both ways after the switch; with tickets, the first record's sequence number follows them",
          arguments: [false, true])
    func exchange(tickets: Bool) throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true, tickets: tickets)
        #expect(sb_tls_uses_own_records(pair.server) == 1)
        for round in 0..<20 {
            pair.feed(pair.server, pair.clientRecords(["ping \(round)", "second \(round)"])[...])
            let read = pair.serverReadLoop()
            #expect(read.plaintexts == ["ping \(round)", "second \(round)"])
            pair.serverWrite("pong \(round)")
            #expect(pair.clientReadAll() == ["pong \(round)"])
        }
    }

    @Test("a client on the own record layer (the load generator's) against OpenSSL's server and against the own one, tickets read and dropped",
          arguments: [false, true])
    func ownClient(serverOwn: Bool) throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: serverOwn, tickets: true, clientOwnRecords: true)
        #expect(sb_tls_uses_own_records(pair.client) == 1)
        #expect(sb_tls_uses_own_records(pair.server) == (serverOwn ? 1 : 0))
        for round in 0..<10 {
            pair.serverWrite("from server \(round)")
            #expect(pair.clientReadAll() == ["from server \(round)"])
            pair.feed(pair.server, pair.clientRecords(["from client \(round)"])[...])
            #expect(pair.serverReadLoop().plaintexts == ["from client \(round)"])
        }
    }

    @Test("the server's tickets are sealed before the switch when the client asks for them (the case the sequence number counts)")
    func ticketsAreSent() throws {
        let withTickets = try MemoryPair(try TLSFiles(), ownRecords: true, tickets: true)
        // The handshake loop moved them; the client reads them with its first read.
        withTickets.serverWrite("x")
        #expect(withTickets.clientReadAll() == ["x"])
        #expect(sb_tls_test_client_has_ticket(withTickets.client) == 1)
    }

    @Test("a 40,000-byte write goes out as records of at most 2^14 bytes; the client reads it all")
    func largeWrite() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        let big = String(repeating: "abcdefghij", count: 4_000)
        pair.serverWrite(big)
        // Three records: 16,384 + 16,384 + 7,232 bytes, each with 5 + 1 + 16 bytes around it.
        #expect(sb_tls_pending_out(pair.server) == 40_000 + 3 * 22)
        #expect(pair.clientReadAll().joined() == big)
    }

    @Test("records fed one byte at a time are read whole, each once")
    func byteByByte() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        let bytes = pair.clientRecords(["alpha", "beta", "gamma"])
        var got: [String] = []
        for i in bytes.indices {
            pair.feed(pair.server, bytes[i...i])
            let read = pair.serverReadLoop()
            got += read.plaintexts
            #expect(read.last >= 0)
        }
        #expect(got == ["alpha", "beta", "gamma"])
        #expect(sb_tls_has_input(pair.server) == 0)
    }

    @Test("padded records (the client pads to 256 bytes) are read without their padding")
    func paddedRecords() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        #expect(sb_tls_test_block_padding(pair.client, 256) == 0)
        let bytes = pair.clientRecords(["padded", "records"])
        #expect(bytes.count == 2 * (5 + 256 + 16))
        pair.feed(pair.server, bytes[...])
        #expect(pair.serverReadLoop().plaintexts == ["padded", "records"])
    }

    @Test("a KeyUpdate not requesting one: the server reads on with the client's next keys and keeps its own")
    func keyUpdateNotRequested() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        #expect(sb_tls_test_key_update(pair.client, 0) == 0)
        pair.move(from: pair.client, to: pair.server)
        pair.feed(pair.server, pair.clientRecords(["after update"])[...])
        #expect(pair.serverReadLoop().plaintexts == ["after update"])
        #expect(sb_tls_key_updates(pair.server) == 1)
        #expect(sb_tls_pending_out(pair.server) == 0, "nothing to answer")
        pair.serverWrite("reply")
        #expect(pair.clientReadAll() == ["reply"])
    }

    @Test("a KeyUpdate requesting one: the server answers with its own, then seals with its next keys")
    func keyUpdateRequested() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        for generation in 1...3 {
            #expect(sb_tls_test_key_update(pair.client, 1) == 0)
            pair.move(from: pair.client, to: pair.server)
            pair.feed(pair.server, pair.clientRecords(["gen \(generation)"])[...])
            #expect(pair.serverReadLoop().plaintexts == ["gen \(generation)"])
            // The answer: one record holding KeyUpdate(update_not_requested), 5 bytes.
            #expect(sb_tls_pending_out(pair.server) == 5 + 5 + 1 + 16)
            pair.serverWrite("reply \(generation)")
            #expect(pair.clientReadAll() == ["reply \(generation)"])
            #expect(sb_tls_key_updates(pair.server) == generation)
        }
    }

    @Test("32 empty application-data records are accepted; user_canceled is not the end")
    func emptyRecordsAndUserCanceled() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true, captureClientSecrets: true)
        var bytes: [UInt8] = []
        for sequence in 0..<32 { bytes += pair.forgeClientRecord(sequence: UInt64(sequence), type: 23, []) }
        bytes += pair.forgeClientRecord(sequence: 32, type: 21, [1, 90])
        bytes += pair.forgeClientRecord(sequence: 33, type: 23, Array("data".utf8))
        pair.feed(pair.server, bytes[...])
        #expect(pair.serverReadLoop().plaintexts == ["data"])
    }

    @Test("close_notify from the client reads as the end (-1); the server's close_notify reads as the end at the client")
    func closeNotify() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true)
        sb_tls_close_notify(pair.client)
        pair.move(from: pair.client, to: pair.server)
        var buffer = [UInt8](repeating: 0, count: 16_640)
        #expect(buffer.withUnsafeMutableBytes { sb_tls_read(pair.server, $0.baseAddress, $0.count) } == -1)
        sb_tls_close_notify(pair.server)
        // A closed session seals nothing more.
        #expect(Array("late".utf8).withUnsafeBytes { sb_tls_write(pair.server, $0.baseAddress, $0.count) } == -1)
        pair.move(from: pair.server, to: pair.client)
        #expect(buffer.withUnsafeMutableBytes { sb_tls_read(pair.client, $0.baseAddress, $0.count) } == -1)
    }

    @Test("after a refused record nothing more is read or written")
    func deadAfterFailure() throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true, captureClientSecrets: true)
        pair.feed(pair.server, [20, 3, 3, 0, 1, 1][...])
        var buffer = [UInt8](repeating: 0, count: 16_640)
        #expect(buffer.withUnsafeMutableBytes { sb_tls_read(pair.server, $0.baseAddress, $0.count) } == -2)
        pair.feed(pair.server, pair.clientRecords(["more"])[...])
        #expect(sb_tls_has_input(pair.server) == 0)
        #expect(buffer.withUnsafeMutableBytes { sb_tls_read(pair.server, $0.baseAddress, $0.count) } == -2)
        #expect(Array("late".utf8).withUnsafeBytes { sb_tls_write(pair.server, $0.baseAddress, $0.count) } == -1)
        clearThreadErrors()
    }

    @Test("a TLS 1.2 session keeps OpenSSL's record layer; so does every session when it is not asked for")
    func openSSLSessions() throws {
        let tls12 = try MemoryPair(try TLSFiles(), ownRecords: true, clientMaxTLS12: true)
        #expect(sb_tls_uses_own_records(tls12.server) == 0)
        tls12.feed(tls12.server, tls12.clientRecords(["over 1.2"])[...])
        #expect(tls12.serverReadLoop().plaintexts == ["over 1.2"])
        let notAsked = try MemoryPair(try TLSFiles(), ownRecords: false)
        #expect(sb_tls_uses_own_records(notAsked.server) == 0)
    }

    // MARK: - Bad records: every row of TLS_BAD_RECORDS.md

    @Test func tableCoversEveryAlert() {
        #expect(Set(badRecords.map(\.name)).count == badRecords.count, "row names are unique")
        let outcomes = Set(badRecords.map { "\($0.outcome)" })
        for alert in [10, 20, 22, 47, 50] { #expect(outcomes.contains("alert(\(alert))"), "alert \(alert) has a row") }
        #expect(outcomes.contains("peerAlert") && outcomes.contains("closed"))
    }

    @Test(arguments: badRecords)
    func badRecordIsRefused(_ row: BadRecord) throws {
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true, captureClientSecrets: true)
        let bytes = row.bytes(pair)
        // Whole, then (on a second pair) one byte at a time: the same outcome either way.
        for split in [false, true] {
            let target = split ? try MemoryPair(try TLSFiles(), ownRecords: true, captureClientSecrets: true) : pair
            let input = split ? row.bytes(target) : bytes
            var last: Int32 = 0
            var plaintexts: [String] = []
            if split {
                for i in input.indices where last >= 0 {
                    target.feed(target.server, input[i...i])
                    let read = target.serverReadLoop()
                    plaintexts += read.plaintexts
                    last = read.last
                }
            } else {
                target.feed(target.server, input[...])
                let read = target.serverReadLoop()
                plaintexts = read.plaintexts
                last = read.last
            }
            #expect(plaintexts == row.readFirst, "\(row.name) (split \(split)): plaintext before the refusal")
            switch row.outcome {
            case .alert(let code):
                #expect(last == -2, "\(row.name) (split \(split))")
                // The server sealed a fatal alert; OpenSSL's client reads it and names it.
                let error = target.clientError()
                #expect(error.contains(alertText[code] ?? "?"), "\(row.name) (split \(split)): client saw \(error)")
            case .peerAlert:
                #expect(last == -2)
                #expect(sb_tls_pending_out(target.server) == 0, "no alert answers a fatal alert")
            case .closed:
                #expect(last == -1)
                #expect(sb_tls_pending_out(target.server) == 0)
            }
            clearThreadErrors()
        }
    }

    /// The Markdown copy for the docs must list exactly the table above.
    @Test func markdownMirrorsTable() throws {
        let rendered = renderBadRecordsMarkdown()
        let onDisk = try DocMirror.committed("Sources/SwitchboardIO/TLS_BAD_RECORDS.md", rendered: rendered, regenerate: "REGENERATE_BAD_INPUTS")
        #expect(onDisk == rendered, "run the tests with REGENERATE_BAD_INPUTS=1 to rewrite TLS_BAD_RECORDS.md")
    }
}

/// OpenSSL's reason text for the alerts the table expects (what its client reports).
private let alertText: [UInt8: String] = [
    10: "alert unexpected message", 20: "alert bad record mac", 22: "alert record overflow",
    47: "alert illegal parameter", 50: "alert decode error", 80: "alert internal error",
]

private let alertName: [UInt8: String] = [
    10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow", 47: "illegal_parameter",
    50: "decode_error", 80: "internal_error",
]

struct BadRecord: Sendable, CustomTestStringConvertible {
    enum Outcome: Sendable, CustomStringConvertible {
        /// The read fails (-2) and the server seals this fatal alert.
        case alert(UInt8)
        /// The peer's own fatal alert: the read fails (-2) and nothing is sent back.
        case peerAlert
        /// close_notify: the read says the peer is done (-1).
        case closed
        var description: String {
            switch self {
            case .alert(let code): "alert(\(code))"
            case .peerAlert: "peerAlert"
            case .closed: "closed"
            }
        }
    }

    let name: String
    /// What the client sends, for the Markdown table.
    let input: String
    let outcome: Outcome
    /// Plaintext the server reads before the refusal.
    let readFirst: [String]
    let build: @Sendable (MemoryPair) -> [UInt8]

    func bytes(_ pair: MemoryPair) -> [UInt8] { build(pair) }
    var testDescription: String { name }
}

private func raw(_ name: String, _ input: String, _ outcome: BadRecord.Outcome, _ bytes: [UInt8]) -> BadRecord {
    BadRecord(name: name, input: input, outcome: outcome, readFirst: []) { _ in bytes }
}

/// A record sealed with the client's real keys (sequence 0 unless said), so only what the row
/// names is wrong.
private func sealed(_ name: String, _ input: String, _ outcome: BadRecord.Outcome, readFirst: [String] = [],
                    _ make: @escaping @Sendable (MemoryPair) -> [UInt8]) -> BadRecord {
    BadRecord(name: name, input: input, outcome: outcome, readFirst: readFirst, build: make)
}

let badRecords: [BadRecord] = [
    raw("plaintext handshake record after the handshake", "type 22 header, ClientHello-like body", .alert(10), [22, 3, 3, 0, 4, 1, 0, 0, 0]),
    raw("change_cipher_spec after the handshake", "type 20, body `01`", .alert(10), [20, 3, 3, 0, 1, 1]),
    raw("plaintext alert after the handshake", "type 21, body `02 28`", .alert(10), [21, 3, 3, 0, 2, 2, 40]),
    raw("record longer than 2^14 + 256 bytes (refused on its header)", "header `17 03 03 41 01`, no body", .alert(22), [23, 3, 3, 0x41, 0x01]),
    raw("body shorter than the AEAD tag", "type 23, 15 zero bytes", .alert(20), [23, 3, 3, 0, 15] + [UInt8](repeating: 0, count: 15)),
    sealed("one ciphertext bit flipped", "sealed `hello`, bit 0 of byte 5 flipped", .alert(20)) { pair in
        var r = pair.forgeClientRecord(sequence: 0, type: 23, Array("hello".utf8)); r[5] ^= 1; return r
    },
    sealed("one tag bit flipped", "sealed `hello`, last byte flipped", .alert(20)) { pair in
        var r = pair.forgeClientRecord(sequence: 0, type: 23, Array("hello".utf8)); r[r.count - 1] ^= 0x80; return r
    },
    sealed("header version changed (it is authenticated data)", "sealed `hello`, version `03 01`", .alert(20)) { pair in
        var r = pair.forgeClientRecord(sequence: 0, type: 23, Array("hello".utf8)); r[2] = 1; return r
    },
    sealed("record replayed (sequence number used twice)", "sealed `hello` twice", .alert(20), readFirst: ["hello"]) { pair in
        let r = pair.forgeClientRecord(sequence: 0, type: 23, Array("hello".utf8)); return r + r
    },
    sealed("record sealed with a later sequence number (one skipped)", "sealed `hello` with sequence 1", .alert(20)) { pair in
        pair.forgeClientRecord(sequence: 1, type: 23, Array("hello".utf8))
    },
    sealed("no content type (inner plaintext all zeros)", "8 zero bytes sealed", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 0, [], padding: 7)
    },
    sealed("plaintext longer than 2^14 bytes", "16,385 bytes sealed as application data", .alert(22)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 23, [UInt8](repeating: 0x61, count: 16_385))
    },
    sealed("unknown inner content type (24, heartbeat)", "sealed `01`, type 24", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 24, [1])
    },
    sealed("alert record of 3 bytes", "sealed `01 00 00`, type 21", .alert(50)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 21, [1, 0, 0])
    },
    sealed("empty alert record", "sealed nothing, type 21", .alert(50)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 21, [])
    },
    sealed("fatal alert from the client", "sealed `02 28` (handshake_failure), type 21", .peerAlert) { pair in
        pair.forgeClientRecord(sequence: 0, type: 21, [2, 40])
    },
    sealed("close_notify, then data (not read)", "sealed `01 00`, then sealed `late`", .closed) { pair in
        pair.forgeClientRecord(sequence: 0, type: 21, [1, 0]) + pair.forgeClientRecord(sequence: 1, type: 23, Array("late".utf8))
    },
    sealed("empty handshake record", "sealed nothing, type 22", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [])
    },
    sealed("ClientHello after the handshake", "sealed `01 00 00 00`, type 22", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [1, 0, 0, 0])
    },
    sealed("NewSessionTicket from the client", "sealed `04 00 00 00`, type 22", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [4, 0, 0, 0])
    },
    sealed("handshake header split across records", "sealed `18 00 00`, type 22", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0])
    },
    sealed("handshake body split across records", "sealed `18 00 00 01`, type 22", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0, 1])
    },
    sealed("KeyUpdate of length 2", "sealed `18 00 00 02 00 00`, type 22", .alert(50)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0, 2, 0, 0])
    },
    sealed("KeyUpdate with request_update 2", "sealed `18 00 00 01 02`, type 22", .alert(47)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0, 1, 2])
    },
    sealed("two KeyUpdates in one record (a key change inside a record)", "sealed `18 00 00 01 00` twice in one type 22 record", .alert(10)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0, 1, 0, 24, 0, 0, 1, 0])
    },
    sealed("record under the old key after a KeyUpdate", "KeyUpdate, then `hello` sealed with the old key", .alert(20)) { pair in
        pair.forgeClientRecord(sequence: 0, type: 22, [24, 0, 0, 1, 0]) + pair.forgeClientRecord(sequence: 1, type: 23, Array("hello".utf8))
    },
    sealed("33 empty application-data records in a row", "33 records sealed with nothing, type 23", .alert(10)) { pair in
        (0..<33).flatMap { pair.forgeClientRecord(sequence: UInt64($0), type: 23, []) }
    },
]

func renderBadRecordsMarkdown() -> String {
    var out = """
    # Refused TLS 1.3 records

    What Switchboard's own TLS 1.3 record layer (`Sources/COpenSSL/tls13_records.c`, used once a
    TLS 1.3 handshake completes unless `tls_record_layer = openssl`) does with each record a
    client may send after the handshake. "Alert" rows: the read fails, a fatal alert is sealed
    for the client (its OpenSSL names it), the shard sends it and closes the connection
    (`switchboard_tls_record_errors_total`). Each row is fed whole and one byte at a time, with
    the same outcome. "Sealed" means encrypted with the client's real keys and sequence number
    0, so only what the row names is wrong. Generated from
    `Tests/SwitchboardIOTests/TLSOwnRecordTests.swift` (`markdownMirrorsTable` fails when they
    drift apart).

    | Record | Input | Outcome |
    |---|---|---|

    """
    for row in badRecords {
        let outcome: String
        switch row.outcome {
        case .alert(let code): outcome = "fatal alert `\(alertName[code] ?? "?")` (\(code))"
        case .peerAlert: outcome = "connection closed, no alert back (the client's alert was fatal)"
        case .closed: outcome = "the peer's end (as EOF); nothing after it is read"
        }
        let first = row.readFirst.isEmpty ? "" : " (after reading \(row.readFirst.map { "`\($0)`" }.joined(separator: ", ")))"
        out += "| \(row.name) | \(row.input) | \(outcome)\(first) |\n"
    }
    return out
}

extension MemoryPair {
    /// A record the client's keys would make: content type `type`, `bytes`, `padding` zeros.
    func forgeClientRecord(sequence: UInt64, type: UInt8, _ bytes: [UInt8], padding: Int = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count + padding + 64)
        let n = bytes.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in
                sb_tls_test_seal_client_record(client, sequence, type, b.baseAddress, b.count, padding, o.baseAddress, o.count)
            }
        }
        precondition(n > 0, "the client's secret was captured (captureClientSecrets)")
        return Array(out.prefix(Int(n)))
    }

    func serverWrite(_ text: String) {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { sb_tls_write(server, $0.baseAddress, $0.count) }
        #expect(Int(n) == bytes.count)
    }

    /// Moves the server's ciphertext to the client and reads until it has nothing more.
    func clientReadAll() -> [String] {
        move(from: server, to: client)
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 16_640)
        var text: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { sb_tls_read(client, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            text += buffer[..<Int(n)]
            // One server write is one message here; a write over 2^14 bytes arrives in parts.
            if sb_tls_has_input(client) == 0 {
                out.append(String(decoding: text, as: UTF8.self))
                text = []
            }
        }
        if !text.isEmpty { out.append(String(decoding: text, as: UTF8.self)) }
        return out
    }

    /// Moves the server's ciphertext to the client; the client's read must fail; OpenSSL's reason.
    func clientError() -> String {
        clearThreadErrors()  // the server's own reason, kept on this thread
        move(from: server, to: client)
        var buffer = [UInt8](repeating: 0, count: 16_640)
        let n = buffer.withUnsafeMutableBytes { sb_tls_read(client, $0.baseAddress, $0.count) }
        guard n == -2 else { return "client read \(n), not a failure" }
        var error = [CChar](repeating: 0, count: 256)
        sb_tls_error(&error, error.count)
        return String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Leaves this thread's OpenSSL error queue (and the record layer's last reason) empty.
fileprivate func clearThreadErrors() {
    var error = [CChar](repeating: 0, count: 256)
    sb_tls_error(&error, error.count)
    sb_tls_error(&error, error.count)
}

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}

/// The short-record AES-GCM (`gcm_small.c`, AES-NI and PCLMULQDQ) against OpenSSL's EVP.
@Suite("AES-GCM for short TLS records, against OpenSSL's", .serialized)
struct SmallRecordGCMTests {
    @Test("same ciphertext and tag as EVP on every length 0...512, each opens the other's, tampering refused, 513 bytes refused", arguments: [16, 32])
    func matchesEVP(keyBytes: Int) throws {
        try #require(sb_tls_gcm_small_available() == 1, "this CPU has no AES-NI/PCLMULQDQ: the EVP path is the only one (tested by every other TLS test)")
        #expect(sb_tls_test_gcm_small_matches_evp(keyBytes, 512) == 0)
    }

    @Test("records through EVP only (forced) and through the short-record path read the same on OpenSSL's client", arguments: [false, true])
    func bothPaths(forceEVP: Bool) throws {
        sb_tls_test_force_evp(forceEVP ? 1 : 0)
        defer { sb_tls_test_force_evp(0) }
        let pair = try MemoryPair(try TLSFiles(), ownRecords: true, tickets: true)
        for size in [0, 1, 15, 16, 17, 100, 495, 496, 497, 511, 512, 513, 4_000] {
            let text = String(repeating: "q", count: size)
            if size > 0 {
                pair.feed(pair.server, pair.clientRecords([text])[...])
                #expect(pair.serverReadLoop().plaintexts == [text])
            }
            pair.serverWrite(text + "!")
            #expect(pair.clientReadAll() == [text + "!"])
        }
    }
}
