import Foundation

/// The repository's test tools (interop scripts, the Python venv), found from this file's own
/// path, so a clean clone or a git worktree finds them wherever it is checked out.
///
/// A test that needs a tool calls `python()`: when the tool is missing it throws
/// `MissingTool`, and the test FAILS with a message saying how to provide it. Required tests
/// never skip silently (a skipped interop test reads as a pass).
public enum RepositoryTools {
    /// The package root: this file is `<root>/Tests/SwitchboardTestSupport/RepositoryTools.swift`.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `<root>/Tests/interop/<name>`.
    public static func interopScript(_ name: String) -> String {
        packageRoot.appendingPathComponent("Tests/interop").appendingPathComponent(name).path
    }

    /// The venv made by `deploy/lib.sh`'s `ensure_python_venv` (Python with `websockets`).
    static let venvPython = ".build/autobahn-venv/bin/python"

    /// Where the interpreter is looked for, in order: `$SWITCHBOARD_PYTHON`, `$CB_PYTHON`
    /// (older name), the venv under this checkout, then the venv under the main checkout when
    /// this is a git worktree (`.git` is then a file `gitdir: <main>/.git/worktrees/<name>`).
    public static var pythonCandidates: [String] {
        var candidates: [String] = []
        let env = ProcessInfo.processInfo.environment
        for name in ["SWITCHBOARD_PYTHON", "CB_PYTHON"] {
            if let value = env[name], !value.isEmpty { candidates.append(value) }
        }
        candidates.append(packageRoot.appendingPathComponent(venvPython).path)
        if let gitFile = try? String(contentsOf: packageRoot.appendingPathComponent(".git"), encoding: .utf8),
           gitFile.hasPrefix("gitdir:") {
            let gitdir = gitFile.dropFirst("gitdir:".count).trimmingCharacters(in: .whitespacesAndNewlines)
            if let range = gitdir.range(of: "/.git/worktrees/") {
                candidates.append(String(gitdir[..<range.lowerBound]) + "/" + venvPython)
            }
        }
        return candidates
    }

    /// The Python interpreter with `websockets`, or `MissingTool` naming every place looked
    /// at and the command that creates the venv.
    public static func python() throws(MissingTool) -> String {
        let candidates = pythonCandidates
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        throw MissingTool(
            "no Python venv with `websockets` (looked at: \(candidates.joined(separator: ", "))). "
                + "Create it with `source deploy/lib.sh; ensure_python_venv \"$PWD\"` in the repository root "
                + "(deploy/test.sh does), or point SWITCHBOARD_PYTHON at a python3 that has websockets >= 13.")
    }
}

/// A tool a required test needs is missing: the test fails with this message (it does not skip).
public struct MissingTool: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
