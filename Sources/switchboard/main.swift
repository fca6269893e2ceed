import ArgumentParser
import Logging
import Switchboard
import SwitchboardCommandLine

/// The Switchboard server with its built-in protocols (the connection-broker protocol on every
/// path by default, as `connection-broker --port 3004` serves it; the broadcaster protocol
/// under `broadcaster_base_path` when `broadcaster_enabled`).
///
/// Configuration layers, lowest first: defaults, `--config FILE`, the reference broadcaster's
/// environment (`PORT`, `JWT_SECRET`, `API_KEYS`, `BASE_PATH`) in compatibility mode (started
/// as `broadcaster`, or `SWITCHBOARD_BROADCASTER_COMPAT=1`), `SWITCHBOARD_<KEY>` environment
/// variables, flags. SIGTERM/SIGINT shut down gracefully (a `ServiceGroup`).
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A WebSocket and HTTP message broker.",
        discussion: """
        Every configuration key can be set in the file (--config), as an environment variable \
        SWITCHBOARD_<KEY IN UPPER CASE> (e.g. SWITCHBOARD_CB_MAX_ROLE_BYTES=512), or with \
        --set key=value; later layers override earlier ones. Keys: --print-config-keys.
        """,
        version: "switchboard 0.1.0")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        if options.printConfigKeys {
            print(ConfigurationFile.keyList(SwitchboardServerConfiguration.sections), terminator: "")
            return
        }
        if options.printDefaultConfig {
            print(SwitchboardServerConfiguration().exampleFile(), terminator: "")
            return
        }
        options.bootstrapLogging()
        let logger = Logger(label: "switchboard")
        let configuration: SwitchboardServerConfiguration
        do {
            let layers = try SwitchboardServerConfiguration.layers(options, environment: ConfigurationFile.processEnvironment(),
                                                                   executablePath: CommandLine.arguments[0])
            ServerRunner.warnIgnored(layers, logger: logger)
            configuration = try SwitchboardServerConfiguration(layers: layers)
        } catch {
            throw ServerRunner.fail("switchboard", "\(error)")
        }
        let broker = configuration.makeBroker(logger: logger)
        try await ServerRunner.run([broker], name: "switchboard", logger: logger)
    }
}

await ServerRunner.main(SwitchboardCommand.self)
