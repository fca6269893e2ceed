import ArgumentParser

/// One of switchboard-bench's command lines (`BenchCommand`: the scenarios; `TemplateCommand`:
/// the protocol templates): parsed by swift-argument-parser, then checked into its options.
public protocol BenchCommandLine: ParsableCommand {
    associatedtype Options
    /// The last line of a usage error, e.g. "See 'switchboard-bench --help'."
    static var helpHint: String { get }
    /// Checks and converts the parsed command line.
    func makeOptions() throws(CommandUsageError<Self>) -> Options
}

extension BenchCommandLine {
    /// Parses the arguments after the program name into checked options.
    public static func parseOptions(_ arguments: [String]) throws(CommandUsageError<Self>) -> Options {
        let command: Self
        do {
            command = try parse(arguments)
        } catch {
            if exitCode(for: error) == .success { throw CommandUsageError("", helpRequested: true) }
            throw CommandUsageError(message(for: error))
        }
        return try command.makeOptions()
    }
}

/// A problem with a `Command` command line: `description` carries the message, the command's
/// usage line and its help hint, or its full help when `--help` was asked for (print that on
/// stdout and exit 0).
public struct CommandUsageError<Command: BenchCommandLine>: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let helpRequested: Bool

    public init(_ message: String, helpRequested: Bool = false) {
        self.message = message
        self.helpRequested = helpRequested
    }

    public var description: String {
        if helpRequested { return Command.helpMessage() }
        return "switchboard-bench: \(message)\n\(Command.usageString())\n  \(Command.helpHint)"
    }
}
