import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway CA and certificates made at run time with the openssl CLI (no key is committed).
public final class TLSFiles: @unchecked Sendable {
    public let directory: String
    public var ca: String { directory + "/ca.pem" }
    public var chain: String { directory + "/server.pem" }
    public var key: String { directory + "/server.key" }

    public init() throws {
        directory = NSTemporaryDirectory() + "switchboard-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", directory + "/ca.key", "-out", ca, "-days", "2", "-subj", "/CN=Switchboard test CA"])
        try issue(name: "server", host: "localhost", serial: 1001)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Issues `<name>.pem` + `<name>.key` for `host` (and 127.0.0.1), signed by the CA.
    /// `days: -1` makes an expired one.
    @discardableResult
    public func issue(name: String, host: String, serial: Int, days: Int = 2) throws -> (chain: String, key: String) {
        let base = directory + "/" + name
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=\(host)"])
        try "subjectAltName=DNS:\(host),IP:127.0.0.1\n".write(toFile: base + ".ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", base + ".csr", "-CA", ca, "-CAkey", directory + "/ca.key",
                     "-set_serial", String(serial), "-days", String(days), "-extfile", base + ".ext", "-out", base + ".pem"])
        return (base + ".pem", base + ".key")
    }

    private func openssl(_ arguments: [String]) throws {
        let result = try runTool("/usr/bin/openssl", arguments)
        guard result.status == 0 else { throw MissingTool("openssl \(arguments.joined(separator: " ")) failed: \(result.output)") }
    }
}

/// Runs a tool to completion; its standard output and error, merged. `input` is its standard
/// input (then EOF); `environment` is added to this process's. A missing tool throws
/// `MissingTool` (the test fails, it does not skip).
public func runTool(_ path: String, _ arguments: [String], input: String? = nil,
                    environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw MissingTool("\(path) is missing (install it: apt-get install -y openssl curl)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

