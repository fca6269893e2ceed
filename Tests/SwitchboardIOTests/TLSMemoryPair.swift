import COpenSSL
import SwitchboardIO
import SwitchboardTestSupport
import Testing

/// A server session and a client session joined by memory only (no sockets): the record calls
/// the shard makes (`sb_tls_feed`, `sb_tls_read`, `sb_tls_has_input`, `sb_tls_write`), driven
/// byte for byte. All on the test's thread, as a shard calls them on its own.
final class MemoryPair {
    let serverContext: OpaquePointer
    let clientContext: OpaquePointer
    let server: OpaquePointer
    let client: OpaquePointer

    /// `ownRecords`: the server makes its own TLS 1.3 records after the handshake
    /// (`sb_tls_set_own_records`). `tickets`: the client asks for session tickets, so the
    /// server seals its tickets before the first application record. `captureClientSecrets`:
    /// the client keeps its traffic secret, for `forgeClientRecord`.
    init(_ files: TLSFiles, ownRecords: Bool = false, tickets: Bool = false, captureClientSecrets: Bool = false, clientMaxTLS12: Bool = false,
         clientOwnRecords: Bool = false) throws {
        var error = [CChar](repeating: 0, count: 256)
        guard let s = sb_tls_ctx_new(files.chain, files.key, &error, error.count) else {
            throw MissingTool("server context: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        guard let c = sb_tls_bench_client_ctx_new() else { throw MissingTool("client context") }
        if tickets { sb_tls_test_client_accepts_tickets(c) }
        if clientMaxTLS12 { sb_tls_test_client_max_tls12(c) }
        serverContext = s
        clientContext = c
        server = sb_tls_conn_new(s)!
        client = sb_tls_conn_new_client(c)!
        if ownRecords { sb_tls_set_own_records(server, 1) }
        if captureClientSecrets { sb_tls_test_capture_secrets(client) }
        if clientOwnRecords { sb_tls_set_own_records(client, 1) }
        for _ in 0..<10 {
            let clientDone = sb_tls_handshake(client)
            try #require(clientDone >= 0)
            move(from: client, to: server)
            let serverDone = sb_tls_handshake(server)
            try #require(serverDone >= 0)
            move(from: server, to: client)
            if clientDone == 1 && serverDone == 1 { break }
        }
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
