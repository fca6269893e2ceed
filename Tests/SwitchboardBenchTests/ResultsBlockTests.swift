import Foundation
import SwitchboardTestSupport
import Testing

/// `Benchmarks/scripts/run-all.sh` writes its report into `Benchmarks/RESULTS.md` through
/// `splice_report` (`Benchmarks/scripts/lib.sh`): its own block between two marker lines is
/// replaced, and the dated sections recorded by hand around it must come through byte for byte.
/// A mistake here would silently drop the project's measurement history, so every case is
/// checked against the exact file it must produce.
@Suite("Benchmarks: run-all.sh's block of RESULTS.md")
struct ResultsBlockTests {
    static let begin = "<!-- run-all.sh: begin (the block up to the end marker is rewritten by Benchmarks/scripts/run-all.sh) -->"
    static let end = "<!-- run-all.sh: end -->"
    static let report = "## The standard matrix\n\n| a | b |\n|---|---|\n"
    /// Hand-recorded sections, with what awk might trip over: a line that looks like a marker
    /// but is not one, trailing spaces, an empty last section, no newline at the very end.
    static let sections = "## 2026-12-03: by hand\n\n<!-- run-all.sh: begin -->  \ntext  \n\n## 2026-12-02\n\nlast line"

    /// Runs `splice_report FILE REPORT` (FILE nil: a path that does not exist).
    func splice(_ file: String?) throws -> (status: Int32, output: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("results-block-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.report.write(toFile: directory + "/report", atomically: true, encoding: .utf8)
        if let file { try file.write(toFile: directory + "/RESULTS.md", atomically: true, encoding: .utf8) }
        let lib = RepositoryTools.packageRoot.path + "/Benchmarks/scripts/lib.sh"
        return try runTool("/bin/bash", ["-c", "source \"$1\" && splice_report \"$2\" \"$3\"", "splice", lib, directory + "/RESULTS.md", directory + "/report"])
    }

    var block: String { Self.begin + "\n" + Self.report + Self.end + "\n" }

    @Test("a file without markers gets the block after its title paragraph, the rest unchanged")
    func insertsAfterTitle() throws {
        let title = "# Benchmark results\n\nWhat this file is.\n\n"
        let result = try splice(title + Self.sections)
        #expect(result.status == 0, "\(result.output)")
        // awk ends the last line with a newline: the only byte the splice adds to the sections.
        #expect(result.output == title + block + "\n" + Self.sections + "\n")
    }

    @Test("a file with markers gets the new block in place of the old one, the rest unchanged")
    func replacesBlock() throws {
        let before = "# Benchmark results\n\nintro\n\n"
        let old = Self.begin + "\n## The old matrix\n\nold rows\n" + Self.end + "\n"
        let file = before + old + "\n" + Self.sections + "\n"
        let result = try splice(file)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output == before + block + "\n" + Self.sections + "\n")
        // Splicing the same report again changes nothing.
        let again = try splice(result.output)
        #expect(again.output == result.output)
    }

    @Test("no file: a title and the block")
    func noFile() throws {
        let result = try splice(nil)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output == "# Benchmark results\n\n" + block)
    }

    @Test("broken markers fail, so run-all.sh leaves RESULTS.md as it was",
          arguments: [
            ("a begin without an end", "# R\n\n\(begin)\nold\n## 2026\n", "1 begin and 0 end"),
            ("an end without a begin", "# R\n\n\(end)\n## 2026\n", "0 begin and 1 end"),
            ("two blocks", "# R\n\n\(begin)\n\(end)\n\(begin)\n\(end)\n", "2 begin and 2 end"),
          ])
    func brokenMarkers(_ case: (name: String, file: String, message: String)) throws {
        let result = try splice(`case`.file)
        #expect(result.status == 1, "\(`case`.name): \(result.output)")
        #expect(result.output == "splice_report: \(`case`.message) markers (one of each, or none)\n", "\(`case`.name)")
    }
}
