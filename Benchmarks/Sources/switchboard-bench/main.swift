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

// The protocol templates (broker, broadcaster, rpc) have their own command line.
let arguments = Array(CommandLine.arguments.dropFirst())
if isTemplateCommandLine(arguments) { runTemplateCommandLine(arguments) }

let options: BenchOptions
do {
    options = try parseArguments(arguments)
} catch {
    if error.helpRequested {
        print(error.description)
        exit(0)
    }
    writeStderr(error.description + "\n")
    exit(2)
}

do {
    let result = try runBenchmark(options, progress: !options.quiet)
    print(result.summary, terminator: "")
    if let path = options.jsonPath, !writeFile(path, result.json) {
        writeStderr("switchboard-bench: cannot write \(path)\n")
        exit(1)
    }
    let failures = result.failures
    if !failures.isEmpty {
        // A failed run must never be read as a figure: say why on stderr too, exit 1.
        for f in failures { writeStderr("switchboard-bench: FAILED: \(f)\n") }
        exit(1)
    }
    exit(0)
} catch {
    writeStderr("switchboard-bench: \(error)\n")
    exit(1)
}

/// `switchboard-bench broker|broadcaster|rpc ...`: runs the template, prints its summary, and
/// exits 0 (passed), 1 (failed) or 2 (usage).
func runTemplateCommandLine(_ arguments: [String]) -> Never {
    let options: TemplateOptions
    do {
        options = try parseTemplateArguments(arguments)
    } catch {
        if error.helpRequested {
            print(error.description)
            exit(0)
        }
        writeStderr(error.description + "\n")
        exit(2)
    }
    do {
        let run = try runTemplate(options)
        print(run.summary, terminator: "")
        if let path = options.jsonPath, !writeFile(path, run.json) {
            writeStderr("switchboard-bench: cannot write \(path)\n")
            exit(1)
        }
        for f in run.failures { writeStderr("switchboard-bench: FAILED: \(f)\n") }
        exit(run.passed ? 0 : 1)
    } catch {
        writeStderr("switchboard-bench: \(error)\n")
        exit(1)
    }
}
