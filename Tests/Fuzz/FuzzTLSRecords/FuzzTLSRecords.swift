import FuzzSupport
import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry for Switchboard's own TLS 1.3 record layer (`tls13_records.c` behind
/// `sb_tls_read`): a real handshake between OpenSSL's client and a server session that takes
/// the records over, then a byte stream built from the input and fed to the server in pieces,
/// read as `Shard.readPlaintext` reads it. The stream mixes records sealed with the client's
/// real keys (any content type, length, padding, sequence number) with raw bytes, so the
/// fuzzer reaches what comes after authentication (alerts, KeyUpdates, empty records, padding)
/// and not only the header checks. Checks:
/// - no read returns more than its buffer, and none returns data after a failure or the end;
/// - `sb_tls_has_input` never hides a record: when it says 0, a read returns no data;
/// - the plaintext delivered is exactly the application data sealed in order, or a prefix of it
///   when the stream was refused;
/// - whatever the server sealed (alerts, KeyUpdate answers) is readable by OpenSSL's client or
///   ends it cleanly (no crash), and a refused stream leaves at most one pending alert record.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTLSRecords(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0, let contexts = Contexts.shared else { return 0 }
    guard let server = sb_tls_conn_new(contexts.server), let client = sb_tls_conn_new_client(contexts.client) else { return 0 }
    defer { sb_tls_conn_free(server); sb_tls_conn_free(client) }
    sb_tls_set_own_records(server, 1)
    sb_tls_test_capture_secrets(client)
    guard handshake(server, client), sb_tls_uses_own_records(server) == 1 else {
        fatalError("the handshake or the switch to the own record layer failed")
    }

    // Build the stream: (sealed record | raw bytes)*, and what application data a faithful
    // reader delivers from it.
    var input = Reader(data, size)
    var stream: [UInt8] = []
    var expected: [UInt8] = []
    var sequence: UInt64 = 0
    var faithful = true  // every record so far is one the server must accept
    var pieces: [Int] = []
    var scratch = [UInt8](repeating: 0, count: 17_000)
    while let op = input.byte() {
        switch op % 8 {
        case 0...3:
            // A sealed record. Content type: mostly application data.
            let typeByte = input.byte() ?? 0
            let type: UInt8 = typeByte < 200 ? 23 : [21, 22, 0, 24, 20][Int(typeByte) % 5]
            let length = Int(input.byte() ?? 0) * (op == 3 ? 64 : 1)
            let padding = Int(input.byte() ?? 0) % 32
            let content = input.bytes(min(length, 16_600))
            var seq = sequence
            if op == 2, let skew = input.byte(), skew & 0x80 != 0 { seq = sequence &+ UInt64(skew & 0x7f) &- 8 }
            let n = content.withUnsafeBytes { c in
                scratch.withUnsafeMutableBytes { o in
                    sb_tls_test_seal_client_record(client, seq, type, c.baseAddress, c.count, padding, o.baseAddress, o.count)
                }
            }
            guard n > 0 else { break }
            stream += scratch[..<Int(n)]
            sequence &+= 1
            let accepted = seq == sequence &- 1 && type == 23 && content.count <= 16_384
            if faithful && accepted { expected += content } else { faithful = false }
        case 4:
            stream += input.bytes(Int(input.byte() ?? 0) % 40)
            faithful = false
        case 5:
            pieces.append(stream.count)
        default:
            // A cut point with nothing added: the next feed starts here.
            pieces.append(stream.count)
        }
    }
    pieces.append(stream.count)

    // Feed it as the shard would: each piece, then read until "needs more input" or the end.
    var delivered: [UInt8] = []
    var out = [UInt8](repeating: 0, count: 16_640)
    var ended: Int32 = 0
    var start = 0
    for cut in pieces where cut >= start {
        if ended == 0 && cut > start {
            let fed = stream[start..<cut].withUnsafeBytes { sb_tls_feed(server, $0.baseAddress, $0.count) }
            precondition(Int(fed) == cut - start, "feed takes everything")
        }
        start = cut
        while ended == 0 {
            let n = out.withUnsafeMutableBytes { sb_tls_read(server, $0.baseAddress, $0.count) }
            precondition(n <= Int32(out.count), "a read returned more than its buffer")
            if n > 0 {
                delivered += out[..<Int(n)]
                if sb_tls_has_input(server) == 0 {
                    // The shard stops here: a read now must not have data.
                    let again = out.withUnsafeMutableBytes { sb_tls_read(server, $0.baseAddress, $0.count) }
                    precondition(again <= 0, "sb_tls_has_input said 0 with a record waiting")
                    if again < 0 { ended = again }
                    break
                }
                continue
            }
            if n < 0 { ended = n }
            break
        }
    }
    if ended != 0 {
        let after = out.withUnsafeMutableBytes { sb_tls_read(server, $0.baseAddress, $0.count) }
        precondition(after == ended, "a read after the end changed its answer")
        precondition(sb_tls_has_input(server) == 0)
    }
    if ended == 0 && faithful {
        precondition(delivered == expected, "delivered plaintext differs from what was sealed")
    } else {
        precondition(delivered.count <= expected.count || !faithful, "more plaintext than was sealed")
        if faithful { precondition(Array(expected.prefix(delivered.count)) == delivered, "delivered plaintext is not a prefix of what was sealed") }
    }
    // What the server sealed (KeyUpdate answers, an alert): OpenSSL's client reads it or fails
    // cleanly.
    let pending = sb_tls_pending_out(server)
    if pending > 0 {
        var bytes = [UInt8](repeating: 0, count: pending)
        let n = bytes.withUnsafeMutableBytes { Int(sb_tls_take_out(server, $0.baseAddress, $0.count)) }
        precondition(n == pending)
        _ = bytes.withUnsafeBytes { sb_tls_feed(client, $0.baseAddress, $0.count) }
        while out.withUnsafeMutableBytes({ sb_tls_read(client, $0.baseAddress, $0.count) }) > 0 {}
    }
    var error = [CChar](repeating: 0, count: 256)
    sb_tls_error(&error, error.count)
    sb_tls_error(&error, error.count)
    return 0
}

private struct Reader {
    let data: UnsafePointer<UInt8>
    let size: Int
    var at = 0
    init(_ data: UnsafePointer<UInt8>, _ size: Int) { self.data = data; self.size = size }
    mutating func byte() -> UInt8? {
        guard at < size else { return nil }
        defer { at += 1 }
        return data[at]
    }
    mutating func bytes(_ n: Int) -> [UInt8] {
        let k = min(n, size - at)
        defer { at += k }
        return Array(UnsafeBufferPointer(start: data + at, count: k))
    }
}

private func move(_ from: OpaquePointer, _ to: OpaquePointer) {
    let pending = sb_tls_pending_out(from)
    guard pending > 0 else { return }
    var bytes = [UInt8](repeating: 0, count: pending)
    let n = bytes.withUnsafeMutableBytes { Int(sb_tls_take_out(from, $0.baseAddress, $0.count)) }
    _ = bytes.withUnsafeBytes { sb_tls_feed(to, $0.baseAddress, n) }
}

private func handshake(_ server: OpaquePointer, _ client: OpaquePointer) -> Bool {
    for _ in 0..<10 {
        let c = sb_tls_handshake(client)
        move(client, server)
        let s = sb_tls_handshake(server)
        move(server, client)
        if c < 0 || s < 0 { return false }
        if c == 1 && s == 1 { return true }
    }
    return false
}

/// A throwaway certificate made once per process with the openssl tool, and the two contexts.
private final class Contexts: @unchecked Sendable {
    let server: OpaquePointer
    let client: OpaquePointer
    static let shared: Contexts? = Contexts()

    private init?() {
        let dir = "/tmp/fuzz-tls-records-\(getpid())"
        let command = "mkdir -p \(dir) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes " +
            "-subj /CN=localhost -days 2 -keyout \(dir)/key.pem -out \(dir)/cert.pem >/dev/null 2>&1"
        guard system(command) == 0 else { print("FuzzTLSRecords: openssl could not make a certificate"); return nil }
        var error = [CChar](repeating: 0, count: 256)
        guard let s = sb_tls_ctx_new("\(dir)/cert.pem", "\(dir)/key.pem", &error, error.count),
              let c = sb_tls_bench_client_ctx_new() else { return nil }
        // Tickets on: the server seals them before the switch (its first sequence number).
        sb_tls_test_client_accepts_tickets(c)
        server = s
        client = c
    }
}

// SwiftPM renames this target's main to FuzzTLSRecords_main; libFuzzer's driver runs from it (FuzzSupport).
@_cdecl("FuzzTLSRecords_main")
public func fuzzTLSRecordsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzDriver(argc, argv, fuzzTLSRecords)
}
