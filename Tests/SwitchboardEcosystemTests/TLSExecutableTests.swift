import Foundation
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("TLS in the executables: SIGHUP reload, start-up refusal", .serialized)
struct TLSExecutableTests {
    @Test("SIGHUP reloads the certificate; a broken file is refused, logged, and the server keeps running")
    func sighupReload() throws {
        let files = try TLSFiles()
        let server = try ServerProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1", "--set", "tls_port=0",
            "--set", "tls_certificate=\(files.chain)", "--set", "tls_private_key=\(files.key)",
        ])
        defer { if server.process.isRunning { server.process.terminate() } }
        _ = try server.readError { $0.contains("listening with TLS on 127.0.0.1:") }
        kill(server.process.processIdentifier, SIGHUP)
        _ = try server.readError { $0.contains("TLS certificates reloaded from \(files.chain)") }
        try "not a certificate".write(toFile: files.chain, atomically: true, encoding: .utf8)
        kill(server.process.processIdentifier, SIGHUP)
        let log = try server.readError { $0.contains("TLS reload refused") }
        #expect(log.contains("the previous certificate stays in force: cannot load the certificate chain"), "\(log)")
        #expect(server.process.isRunning)
        server.process.terminate()
        #expect(try server.waitForExit() == 0)
    }

    @Test("a key that does not match its certificate stops start-up with a message naming it")
    func mismatchedKeyRefused() throws {
        let files = try TLSFiles()
        let other = try files.issue(name: "other", host: "localhost", serial: 9)
        let server = try ServerProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1", "--set", "tls_port=0",
            "--set", "tls_certificate=\(files.chain)", "--set", "tls_private_key=\(other.key)",
        ])
        let status = try server.waitForExit()
        let log = try server.readError { $0.contains("does not match") || !server.process.isRunning }
        #expect(status != 0)
        #expect(log.contains("the private key does not match the certificate (\(other.key))"), "\(log)")
    }
}
