import ArgumentParser
import Logging
import Switchboard

/// The options every Switchboard server executable takes. Each one is a configuration key set
/// on the command line, the highest layer (see `LayeredConfiguration`); `--set key=value`
/// reaches every key, the named flags the common ones (they override `--set`).
public struct ServerOptions: ParsableArguments, Sendable {
    @Option(help: "TCP port (0 = an ephemeral port). Key: port.")
    public var port: Int?

    @Option(help: ArgumentHelp("Address to listen on, IPv4 or IPv6 literal. Key: host.", valueName: "address"))
    public var host: String?

    @Option(name: .customLong("config"), help: ArgumentHelp("A key = value configuration file (see --print-default-config).", valueName: "file"))
    public var configFile: String?

    @Option(name: .customLong("io-backend"), help: ArgumentHelp("auto | uring | epoll. Key: io_backend.", valueName: "kind"))
    public var ioBackend: String?

    @Option(help: "Shard threads, 0 = one per CPU. Key: shards.")
    public var shards: Int?

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Set any configuration key, e.g. --set ws_max_message_bytes=65536 (repeatable; keys: --print-config-keys).",
        valueName: "key=value"))
    public var assignments: [String] = []

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace | debug | info | notice | warning | error | critical (the 'listening on' line is a notice).", valueName: "level"))
    public var logLevel: String = "info"

    @Flag(name: .customLong("print-config-keys"), help: "List every configuration key with its meaning, and exit.")
    public var printConfigKeys = false

    @Flag(name: .customLong("print-default-config"), help: "Print a configuration file with every key at its default, and exit.")
    public var printDefaultConfig = false

    public init() {}

    public mutating func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// The parsed log level (validated).
    public var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    /// Adds the command-line layer: `--set` first, then the named flags.
    public func addCommandLineLayer(to layers: inout LayeredConfiguration) throws(ConfigurationError) {
        for assignment in assignments { try layers.addAssignment(assignment) }
        if let v = port { try layers.addCommandLine(key: "port", value: String(v), flag: "--port") }
        if let v = host { try layers.addCommandLine(key: "host", value: v, flag: "--host") }
        if let v = ioBackend { try layers.addCommandLine(key: "io_backend", value: v, flag: "--io-backend") }
        if let v = shards { try layers.addCommandLine(key: "shards", value: String(v), flag: "--shards") }
    }

    /// Every layer: the file named by `--config` (read from disk), `environment`, then the
    /// command line. Throws naming the file line, the variable or the flag.
    public func layers(sections: [any ConfigurationSection.Type],
                       environment: [String: String]) throws(ConfigurationError) -> LayeredConfiguration {
        var layers = LayeredConfiguration(sections: sections)
        if let path = configFile {
            try layers.addFile(try ConfigurationFile.contents(path), path: path)
        }
        layers.addEnvironment(environment)
        try addCommandLineLayer(to: &layers)
        return layers
    }

    /// Sends every log record at `--log-level` or above to standard error (once per process;
    /// scripts read the `listening on HOST:PORT` line there).
    public func bootstrapLogging() {
        let level = self.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
