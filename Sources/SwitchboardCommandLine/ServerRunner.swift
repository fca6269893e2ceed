import ArgumentParser
import Logging
import ServiceLifecycle
import Switchboard
#if canImport(Glibc)
import Glibc
#endif

/// Running a server executable: its services in one `ServiceGroup` that turns SIGTERM and
/// SIGINT into a graceful shutdown.
public enum ServerRunner {
    /// Runs `services` until a termination signal (graceful shutdown of all of them, in
    /// reverse order) or until one fails. A failure is printed as `NAME: error` and exits 1.
    public static func run(_ services: [any Service], name: String, logger: Logger) async throws {
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch {
            throw fail(name, "\(error)", exitCode: 1)
        }
    }

    /// Prints `NAME: message` to standard error and returns the exit code to throw.
    public static func fail(_ name: String, _ message: String, exitCode: Int32 = 2) -> ExitCode {
        var line = "\(name): \(message)\n"
        line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
        return ExitCode(exitCode)
    }

    /// The layers of a single-section executable (`BrokerConfiguration` only) resolved from
    /// `defaults`; a configuration error exits 2 naming the line, variable or flag.
    public static func brokerConfiguration(_ options: ServerOptions, defaults: BrokerConfiguration,
                                           name: String, logger: Logger) throws -> BrokerConfiguration {
        do {
            let layers = try options.layers(sections: [BrokerConfiguration.self],
                                            environment: ConfigurationFile.processEnvironment())
            warnIgnored(layers, logger: logger)
            return try layers.resolve(defaults)
        } catch {
            throw fail(name, "\(error)")
        }
    }

    /// Logs one warning per ignored `SWITCHBOARD_*` variable.
    public static func warnIgnored(_ layers: LayeredConfiguration, logger: Logger) {
        for variable in layers.ignoredEnvironmentVariables {
            logger.warning("ignoring environment variable \(variable): it names no configuration key")
        }
    }
}

extension ServerRunner {
    /// Parses the command line and runs `Command` asynchronously. For an executable's
    /// main.swift: there, `await Command.main()` resolves to the synchronous `main()` of
    /// `ParsableCommand`, which refuses an asynchronous root command.
    public static func main<Command: AsyncParsableCommand>(_ command: Command.Type) async {
        await command.main()
    }
}
