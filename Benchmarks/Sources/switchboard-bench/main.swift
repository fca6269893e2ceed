import SwitchboardBenchCore
#if canImport(Glibc)
import Glibc
#endif

// switchboard-bench: WebSocket load generator. See `switchboard-bench --help`.
// Exit status: 0 the run passed, 1 it failed (the reasons on stderr and in the summary),
// 2 usage error.
func writeStderr(_ s: String) {
    var text = s
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// What every subcommand's run reports: the summary (stdout), the JSON (`--json`), why it failed.
protocol RunReport {
    var summary: String { get }
    var json: String { get }
    var failures: [String] { get }
}
extension BenchResult: RunReport {}
extension TemplateRun: RunReport {}

/// A command line the subcommand's parser refused, or `--help`.
protocol CommandLineProblem: Error, CustomStringConvertible {
    var helpRequested: Bool { get }
}
extension CommandUsageError: CommandLineProblem {}

/// The subcommands: the first row whose `matches` takes the arguments parses and runs them
/// (parse errors are `CommandLineProblem`s, anything else thrown is a run that could not be
/// made). The scenarios come last and take every other command line, so `--help` and a
/// missing or unknown scenario get the scenarios' help and usage.
let subcommands: [(matches: ([String]) -> Bool, run: ([String]) throws -> (report: any RunReport, jsonPath: String?))] = [
    // broker, broadcaster, rpc: the protocol templates, with their own command line.
    (isTemplateCommandLine, { arguments in
        let options = try parseTemplateArguments(arguments)
        return (try runTemplate(options), options.jsonPath)
    }),
    // echo, fanout, connect, latency.
    ({ _ in true }, { arguments in
        let options = try parseArguments(arguments)
        return (try runBenchmark(options, progress: !options.quiet), options.jsonPath)
    }),
]

let arguments = Array(CommandLine.arguments.dropFirst())
let subcommand = subcommands.first { $0.matches(arguments) }!
do {
    let (report, jsonPath) = try subcommand.run(arguments)
    print(report.summary, terminator: "")
    if let path = jsonPath, !writeFile(path, report.json) {
        writeStderr("switchboard-bench: cannot write \(path)\n")
        exit(1)
    }
    // A failed run must never be read as a figure: say why on stderr too, exit 1.
    let failures = report.failures
    for f in failures { writeStderr("switchboard-bench: FAILED: \(f)\n") }
    exit(failures.isEmpty ? 0 : 1)
} catch let problem as any CommandLineProblem {
    if problem.helpRequested {
        print(problem.description)
        exit(0)
    }
    writeStderr(problem.description + "\n")
    exit(2)
} catch {
    writeStderr("switchboard-bench: \(error)\n")
    exit(1)
}
