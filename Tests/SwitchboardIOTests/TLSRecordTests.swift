import COpenSSL
import SwitchboardIO
import SwitchboardTestSupport
import Testing

/// A server session and a client session joined by memory only (no sockets): the record calls
/// the shard makes (`sb_tls_feed`, `sb_tls_read`, `sb_tls_has_input`, `sb_tls_write`), driven
/// byte for byte. All on the test's thread, as a shard calls them on its own.
private final class MemoryPair {
    let serverContext: OpaquePointer
    let clientContext: OpaquePointer
    let server: OpaquePointer
    let client: OpaquePointer

    init(_ files: TLSFiles) throws {
        var error = [CChar](repeating: 0, count: 256)
        guard let s = sb_tls_ctx_new(files.chain, files.key, &error, error.count) else {
            throw MissingTool("server context: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        guard let c = sb_tls_bench_client_ctx_new() else { throw MissingTool("client context") }
        serverContext = s
        clientContext = c
        server = sb_tls_conn_new(s)!
        client = sb_tls_conn_new_client(c)!
        for _ in 0..<10 {
            let clientDone = sb_tls_handshake(client)
            try #require(clientDone >= 0)
            move(from: client, to: server)
            let serverDone = sb_tls_handshake(server)
            try #require(serverDone >= 0)
            move(from: server, to: client)
            if clientDone == 1 && serverDone == 1 { break }
        }
        // The client takes the server's last flight (TLS 1.3 tickets are off for the bench client).
        #expect(sb_tls_handshake(client) == 1 && sb_tls_handshake(server) == 1)
    }

    deinit {
        sb_tls_conn_free(server)
        sb_tls_conn_free(client)
        sb_tls_ctx_free(serverContext)
        sb_tls_ctx_free(clientContext)
    }

    /// Every ciphertext byte `from` produced, as one buffer.
    func ciphertext(of from: OpaquePointer) -> [UInt8] {
        let pending = sb_tls_pending_out(from)
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        let n = bytes.withUnsafeMutableBytes { Int(sb_tls_take_out(from, $0.baseAddress!, $0.count)) }
        return Array(bytes.prefix(n))
    }

    func move(from: OpaquePointer, to: OpaquePointer) {
        let bytes = ciphertext(of: from)
        if !bytes.isEmpty { feed(to, bytes[...]) }
    }

    func feed(_ to: OpaquePointer, _ bytes: ArraySlice<UInt8>) {
        let n = bytes.withUnsafeBytes { sb_tls_feed(to, $0.baseAddress, $0.count) }
        #expect(Int(n) == bytes.count)
    }

    /// One record from the client per message, all of their ciphertext concatenated.
    func clientRecords(_ messages: [String]) -> [UInt8] {
        var all: [UInt8] = []
        for m in messages {
            let utf8 = Array(m.utf8)
            #expect(utf8.withUnsafeBytes { sb_tls_write(client, $0.baseAddress, $0.count) } == Int32(utf8.count))
            all += ciphertext(of: client)
        }
        return all
    }

    /// Reads as `Shard.readPlaintext` does: until "needs more input", or until `sb_tls_has_input`
    /// says a further read would only answer that. Returns the records' plaintexts and the last code.
    func serverReadLoop() -> (plaintexts: [String], last: Int32) {
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 16_640)
        while true {
            let n = buffer.withUnsafeMutableBytes { sb_tls_read(server, $0.baseAddress, $0.count) }
            guard n > 0 else { return (out, n) }
            out.append(String(decoding: buffer[..<Int(n)], as: UTF8.self))
            if sb_tls_has_input(server) == 0 { return (out, n) }
        }
    }
}

@Suite("TLS record calls between memory BIOs (what a shard does per received batch)")
struct TLSRecordTests {
    @Test("several records in one batch are all read; the read after the last is skipped; a split record waits whole")
    func recordsInOneBatch() throws {
        let files = try TLSFiles()
        let pair = try MemoryPair(files)
        #expect(sb_tls_has_input(pair.server) == 0, "nothing received yet")
        let bytes = pair.clientRecords(["one", "two", "three", "four"])
        // Each record is 5 B header + 3-5 B data + 1 B content type + 16 B tag (TLS 1.3).
        let recordSizes = ["one", "two", "three", "four"].map { 5 + $0.utf8.count + 1 + 16 }
        #expect(bytes.count == recordSizes.reduce(0, +))
        // Three whole records and 7 bytes of the fourth.
        let firstThree = recordSizes[0..<3].reduce(0, +)
        pair.feed(pair.server, bytes[..<(firstThree + 7)])
        #expect(sb_tls_has_input(pair.server) == 1)
        let first = pair.serverReadLoop()
        #expect(first.plaintexts == ["one", "two", "three"])
        // The partial fourth record was pending, so the loop read on and got "needs more input".
        #expect(first.last == 0)
        pair.feed(pair.server, bytes[(firstThree + 7)...])
        let second = pair.serverReadLoop()
        #expect(second.plaintexts == ["four"])
        #expect(second.last > 0, "the read after the last record was skipped")
        #expect(sb_tls_has_input(pair.server) == 0)
    }

    @Test("an OpenSSL error left on the thread (another connection's failed handshake) does not fail the next read or write")
    func staleErrorOnTheThread() throws {
        let files = try TLSFiles()
        let pair = try MemoryPair(files)
        // Another connection on this thread fails its handshake and leaves OpenSSL's errors
        // behind (the shard clears them, but nothing may depend on it).
        var error = [CChar](repeating: 0, count: 256)
        let other = sb_tls_conn_new(pair.serverContext)!
        defer { sb_tls_conn_free(other) }
        let garbage: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]
        pair.feed(other, garbage[...])
        #expect(sb_tls_handshake(other) == -1)
        // Not cleared: the next calls on this thread must still read "needs more input" as that.
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(buffer.withUnsafeMutableBytes { sb_tls_read(pair.server, $0.baseAddress, $0.count) } == 0)
        pair.feed(pair.server, pair.clientRecords(["after"])[...])
        #expect(pair.serverReadLoop().plaintexts == ["after"])
        let reply = Array("reply".utf8)
        #expect(reply.withUnsafeBytes { sb_tls_write(pair.server, $0.baseAddress, $0.count) } == 5)
        pair.move(from: pair.server, to: pair.client)
        let n = buffer.withUnsafeMutableBytes { sb_tls_read(pair.client, $0.baseAddress, $0.count) }
        #expect(n == 5 && String(decoding: buffer[..<5], as: UTF8.self) == "reply")
        sb_tls_error(&error, error.count)  // leave the thread clean for other tests
    }
}
