import Switchboard
import SwitchboardCommandLine
import SwitchboardProtocols
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `switchboard` executable's layers with the broadcaster's compatibility layer:
/// defaults < file < reference environment (compatibility mode only) < SWITCHBOARD_* < flags.
@Suite("Configuration layers: the broadcaster's compatibility layer")
struct BroadcasterLayerTests {
    private func resolve(_ arguments: [String] = [], environment: [String: String],
                         executable: String = "/usr/local/bin/broadcaster") throws -> (SwitchboardServerConfiguration, LayeredConfiguration) {
        let layers = try SwitchboardServerConfiguration.layers(try ServerOptions.parse(arguments), environment: environment,
                                                               executablePath: executable)
        return (try SwitchboardServerConfiguration(layers: layers), layers)
    }

    private let reference = ["PORT": "9000", "JWT_SECRET": "short", "API_KEYS": "a|b|c"]

    @Test func theReferenceEnvironmentEnablesTheProtocol() throws {
        let (c, layers) = try resolve(environment: reference.merging(["SWITCHBOARD_BROADCASTER_COMPAT": "1"]) { $1 })
        #expect(c.broker.port == 9000 && c.broadcaster.enabled && c.broadcaster.allowShortSecret)
        #expect(c.broadcaster.apiKeys == ["a", "b", "c"] && c.broadcaster.protocolOptions.basePath == "/broadcaster")
        let options = try #require(c.broadcasterOptions)
        #expect(options.apiKeys.count == 3 && options.verifier != nil)
        #expect(layers.ignoredEnvironmentVariables.isEmpty, "the switch is not reported as an unknown key")
        let noPort = try resolve(environment: ["JWT_SECRET": "s", "API_KEYS": "k"]).0
        #expect(noPort.broker.port == BroadcasterConfiguration.referencePort)
    }

    @Test func switchboardVariablesAndFlagsOverrideItAndItOverridesTheFile() throws {
        let file = try temporaryFile("port = 1234\nbroadcaster_base_path = /file\nbroadcaster_max_message_bytes = 4096\n")
        defer { unlink(file) }
        var environment = reference
        environment["BASE_PATH"] = "/reference"
        environment["SWITCHBOARD_BROADCASTER_MAX_MESSAGE_BYTES"] = "2048"
        let (c, _) = try resolve(["--config", file], environment: environment)
        #expect(c.broker.port == 9000 && c.broadcaster.protocolOptions.basePath == "/reference")
        #expect(c.broadcaster.protocolOptions.maxMessageBytes == 2048)
        environment["SWITCHBOARD_PORT"] = "9100"
        #expect(try resolve(environment: environment).0.broker.port == 9100)
        #expect(try resolve(["--port", "9200"], environment: environment).0.broker.port == 9200)
    }

    @Test func withoutCompatibilityModeTheReferenceVariablesAreIgnored() throws {
        let (c, _) = try resolve(environment: reference, executable: "/usr/bin/switchboard")
        #expect(!c.broadcaster.enabled && c.broadcasterOptions == nil && c.broker.port == BrokerConfiguration().port)
    }

    @Test func errorsNameTheReferenceVariable() throws {
        let badPort = #expect(throws: ConfigurationError.self) {
            try resolve(environment: ["PORT": "eighty", "JWT_SECRET": "s", "API_KEYS": "k"])
        }
        #expect(badPort?.description.hasPrefix("environment variable PORT: ") == true, "\(String(describing: badPort))")
        let missing = #expect(throws: ConfigurationError.self) { try resolve(environment: ["API_KEYS": "k"]) }
        #expect(missing?.description == "environment variable JWT_SECRET: required in compatibility mode")
        let badKeyFile = #expect(throws: ConfigurationError.self) {
            try resolve(["--set", "broadcaster_jwt_rs256_public_key_file=/nonexistent.pem"], environment: reference)
        }
        #expect(badKeyFile?.description.contains("broadcaster_jwt_rs256_public_key_file: cannot read /nonexistent.pem (missing") == true,
                "\(String(describing: badKeyFile))")
    }
}
