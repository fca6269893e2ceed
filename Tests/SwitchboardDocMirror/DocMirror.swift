import Foundation

/// A doc generated from a test's table (`BAD_INPUTS.md`, `BAD_TOKENS.md`,
/// `TLS_BAD_RECORDS.md`): each table's `markdownMirrorsTable` test compares the committed copy
/// with what the table renders to, so the docs cannot drift from what the tests check.
///
/// A target of its own, depending on nothing: the codec test targets (HTTP, RESP, JWT) use it
/// without building the server that `SwitchboardTestSupport` brings.
public enum DocMirror {
    /// The package root: this file is `<root>/Tests/SwitchboardDocMirror/DocMirror.swift`.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The committed text of `path` (from the package root). With the environment variable
    /// `regenerate` set to 1 the file is first rewritten with `rendered`: that is how a doc is
    /// brought up to date after its table changed.
    public static func committed(_ path: String, rendered: String, regenerate: String) throws -> String {
        let url = packageRoot.appendingPathComponent(path)
        if ProcessInfo.processInfo.environment[regenerate] == "1" {
            try rendered.write(to: url, atomically: true, encoding: .utf8)
        }
        return try String(contentsOf: url, encoding: .utf8)
    }
}
