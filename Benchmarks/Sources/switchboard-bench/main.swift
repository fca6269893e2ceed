import SwitchboardBenchCore
#if canImport(Glibc)
import Glibc
#endif

// switchboard-bench: WebSocket load generator. See `switchboard-bench --help`.
let arguments = Array(CommandLine.arguments.dropFirst())
let options: BenchOptions
do {
    options = try parseArguments(arguments)
} catch {
    if error.helpRequested {
        print(error.description)
        exit(0)
    }
    var text = error.description + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

do {
    let result = try runBenchmark(options, progress: !options.quiet)
    print(result.summary, terminator: "")
    if let path = options.jsonPath, !writeFile(path, result.json) {
        var text = "switchboard-bench: cannot write \(path)\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        exit(1)
    }
    exit(result.established > 0 ? 0 : 1)
} catch {
    var text = "switchboard-bench: \(error)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}
