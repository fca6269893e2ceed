import COpenSSL
import SwitchboardIO
import SwitchboardTestSupport
import Testing

@Suite("TLS record calls between memory BIOs (what a shard does per received batch)")
struct TLSRecordTests {
    @Test("several records in one batch are all read; the read after the last is skipped; a split record waits whole (OpenSSL's records, then Switchboard's)",
          arguments: [false, true])
    func recordsInOneBatch(ownRecords: Bool) throws {
        let files = try TLSFiles()
        let pair = try MemoryPair(files, ownRecords: ownRecords)
        #expect(sb_tls_uses_own_records(pair.server) == (ownRecords ? 1 : 0))
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
        // OpenSSL's records: the partial fourth record was pending in the read BIO, so the loop
        // read on and got "needs more input". Switchboard's know a partial record from its
        // header and skip that read too (the last read returned "three", 5 bytes).
        #expect(first.last == (ownRecords ? 5 : 0))
        pair.feed(pair.server, bytes[(firstThree + 7)...])
        let second = pair.serverReadLoop()
        #expect(second.plaintexts == ["four"])
        #expect(second.last > 0, "the read after the last record was skipped")
        #expect(sb_tls_has_input(pair.server) == 0)
    }

    @Test("an OpenSSL error left on the thread (another connection's failed handshake) does not fail the next read or write",
          arguments: [false, true])
    func staleErrorOnTheThread(ownRecords: Bool) throws {
        let files = try TLSFiles()
        let pair = try MemoryPair(files, ownRecords: ownRecords)
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
