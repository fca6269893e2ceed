import Switchboard
import SwitchboardCommandLine
import SwitchboardProtocols
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The repository root: <root>/Tests/SwitchboardEcosystemTests/ThisFile.swift.
let repositoryRoot = String(#filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/"))

/// Writes `text` to a new temporary file and returns its path.
func temporaryFile(_ text: String) throws -> String {
    var template = Array("/tmp/switchboard-config-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    try #require(fd >= 0)
    let bytes = Array(text.utf8)
    #expect(write(fd, bytes, bytes.count) == bytes.count)
    close(fd)
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite("Configuration layers: defaults < file < environment < flags")
struct ConfigurationLayeringTests {
    let sections = SwitchboardServerConfiguration.sections

    @Test func exampleFileInTheRepoIsTheGeneratedOneAndParsesToTheDefaults() throws {
        let text = try #require(ConfigurationFile.read(repositoryRoot + "/Config/switchboard.example.conf"))
        #expect(text == SwitchboardServerConfiguration().exampleFile(),
                "regenerate: swift run switchboard --print-default-config > Config/switchboard.example.conf")
        var layers = LayeredConfiguration(sections: sections)
        try layers.addFile(text)
        let parsed = try SwitchboardServerConfiguration(layers: layers)
        let defaults = SwitchboardServerConfiguration()
        for (key, _) in BrokerConfiguration.keys {
            #expect(parsed.broker.value(forKey: key) == defaults.broker.value(forKey: key), "\(key)")
        }
        for (key, _) in ConnectionBrokerOptions.keys {
            #expect(parsed.connectionBroker.value(forKey: key) == defaults.connectionBroker.value(forKey: key), "\(key)")
        }
        var deployed = LayeredConfiguration(sections: sections)
        try deployed.addFile(try #require(ConfigurationFile.read(repositoryRoot + "/Config/switchboard.conf")))
        #expect(try SwitchboardServerConfiguration(layers: deployed).broker.port == 3004)
    }

    @Test func everyConnectionBrokerKeyRoundTrips() throws {
        let defaults = ConnectionBrokerOptions()
        for (key, _) in ConnectionBrokerOptions.keys {
            var o = ConnectionBrokerOptions()
            let value = try #require(defaults.value(forKey: key), "\(key) has no value")
            try o.set(key, value)
            #expect(o.value(forKey: key) == value, "\(key)")
        }
        var o = ConnectionBrokerOptions()
        try o.set("connection_broker_paths", " /cb/, /broker ")
        #expect(o.paths == ["/cb/", "/broker"])
        try o.set("cb_allow_self_channels", "yes")
        #expect(o.allowSelfChannels)
    }

    @Test func laterLayersOverrideEarlierOnesKeyByKey() throws {
        let path = try temporaryFile("port = 4000\nhost = 127.0.0.2\ncb_max_role_bytes = 300\nshards = 3\n")
        defer { unlink(path) }
        let environment = ["SWITCHBOARD_PORT": "4001", "SWITCHBOARD_CB_MAX_ROLE_BYTES": "512", "SWITCHBOARD_SHARDS": "2", "HOME": "/root"]
        let options = try ServerOptions.parse(["--config", path, "--port", "4002", "--set", "cb_max_role_bytes=100", "--set", "ws_slow_consumer=drop"])
        let layers = try options.layers(sections: sections, environment: environment)
        let c = try SwitchboardServerConfiguration(layers: layers)
        #expect(c.broker.port == 4002)  // flag over environment over file
        #expect(c.broker.host == "127.0.0.2")  // file over default
        #expect(c.broker.io.shardCount == 2)  // environment over file
        #expect(c.connectionBroker.maxRoleBytes == 100)  // --set over environment
        #expect(c.broker.webSocket.slowConsumerPolicy == .drop)
        #expect(c.connectionBroker.maxJSONDepth == 64)  // default
        #expect(c.connectionBroker.maxMessageBytes == c.broker.webSocket.maxMessageBytes)

        // Without the flags, the environment wins over the file.
        let envOnly = try ServerOptions.parse(["--config", path]).layers(sections: sections, environment: environment)
        let e = try SwitchboardServerConfiguration(layers: envOnly)
        #expect(e.broker.port == 4001)
        #expect(e.connectionBroker.maxRoleBytes == 512)
    }

    @Test func fileErrorsNameTheFileAndLine() throws {
        var layers = LayeredConfiguration(sections: sections)
        #expect(throws: ConfigurationError(origin: .file(path: "a.conf", line: 2), message: "unknown option 'nope'")) {
            try layers.addFile("port = 1\nnope = 2\n", path: "a.conf")
        }
        var bad = LayeredConfiguration(sections: sections)
        try bad.addFile("# limits\nport = 1\ncb_max_role_bytes = big\n", path: "b.conf")
        let error = #expect(throws: ConfigurationError.self) { try SwitchboardServerConfiguration(layers: bad) }
        #expect(error == ConfigurationError(origin: .file(path: "b.conf", line: 3), message: "cb_max_role_bytes: 'big' is not an integer"))
        #expect(error?.description == "b.conf: line 3: cb_max_role_bytes: 'big' is not an integer")
        #expect(error?.line == 3)
    }

    @Test func environmentErrorsNameTheVariable() throws {
        var layers = LayeredConfiguration(sections: sections)
        layers.addEnvironment(["SWITCHBOARD_CB_ALLOW_SELF_CHANNELS": "maybe"])
        let error = #expect(throws: ConfigurationError.self) { try SwitchboardServerConfiguration(layers: layers) }
        #expect(error?.description == "environment variable SWITCHBOARD_CB_ALLOW_SELF_CHANNELS: cb_allow_self_channels: 'maybe' is not true or false")
    }

    @Test func flagErrorsNameTheFlag() throws {
        #expect(throws: ConfigurationError(origin: .commandLine(flag: "--set"), message: "unknown option 'cb_nope'")) {
            _ = try ServerOptions.parse(["--set", "cb_nope=1"]).layers(sections: sections, environment: [:])
        }
        #expect(throws: ConfigurationError(origin: .commandLine(flag: "--set"), message: "expected key=value, got 'port'")) {
            _ = try ServerOptions.parse(["--set", "port"]).layers(sections: sections, environment: [:])
        }
        let layers = try ServerOptions.parse(["--io-backend", "kqueue"]).layers(sections: sections, environment: [:])
        #expect(throws: ConfigurationError(origin: .commandLine(flag: "--io-backend"), message: "io_backend: 'kqueue' is not auto, uring or epoll")) {
            _ = try SwitchboardServerConfiguration(layers: layers)
        }
    }

    /// Decision: a `SWITCHBOARD_*` variable that names no key is ignored and reported (the
    /// prefix is shared with tooling such as SWITCHBOARD_FUZZ); a typo therefore shows up as a
    /// start-up warning, not as an error.
    @Test func unknownEnvironmentVariablesAreIgnoredAndReported() throws {
        var layers = LayeredConfiguration(sections: sections)
        layers.addEnvironment(["SWITCHBOARD_FUZZ": "1", "SWITCHBOARD_PROT": "9", "SWITCHBOARD_PORT": "5000", "PORT": "1"])
        #expect(layers.ignoredEnvironmentVariables == ["SWITCHBOARD_FUZZ", "SWITCHBOARD_PROT"])
        #expect(try SwitchboardServerConfiguration(layers: layers).broker.port == 5000)
        #expect(LayeredConfiguration.environmentVariable(forKey: "cb_max_role_bytes") == "SWITCHBOARD_CB_MAX_ROLE_BYTES")
    }

    @Test func validationRunsAfterEveryLayer() throws {
        var layers = LayeredConfiguration(sections: sections)
        try layers.addFile("cb_max_role_bytes = 0\n")
        #expect(throws: ConfigurationError(origin: nil, message: "invalid configuration: cb_max_role_bytes must be >= 1")) {
            try SwitchboardServerConfiguration(layers: layers)
        }
        var removals = LayeredConfiguration(sections: sections)
        try removals.addFile("cb_max_pending_role_removals = -1\n")
        #expect(throws: ConfigurationError(origin: nil, message: "invalid configuration: cb_max_pending_role_removals must be >= 0")) {
            try SwitchboardServerConfiguration(layers: removals)
        }
        var paths = LayeredConfiguration(sections: sections)
        paths.addEnvironment(["SWITCHBOARD_CONNECTION_BROKER_PATHS": "cb"])
        #expect(throws: ConfigurationError(origin: nil, message: "invalid configuration: connection_broker_paths: 'cb' is neither * nor a path starting with /")) {
            try SwitchboardServerConfiguration(layers: paths)
        }
        // The core no longer knows the protocol's keys.
        #expect(!BrokerConfiguration.declares("cb_max_role_bytes"))
        var core = BrokerConfiguration()
        #expect(throws: ConfigurationError(line: 1, message: "unknown option 'cb_max_role_bytes'")) {
            try core.apply(configurationText: "cb_max_role_bytes = 3")
        }
    }

    @Test func helpListsEveryOption() {
        let help = ServerOptions.helpMessage()
        for option in ["--port", "--host", "--config", "--io-backend", "--shards", "--set", "--log-level",
                       "--print-config-keys", "--print-default-config"] {
            #expect(help.contains(option), "\(option)")
        }
    }
}

@Suite("Configuration file reading")
struct ConfigurationFileTests {
    @Test func aMissingOrOversizedFileIsAnErrorNamingIt() throws {
        let missing = #expect(throws: ConfigurationError.self) {
            _ = try ServerOptions.parse(["--config", "/nonexistent/switchboard.conf"])
                .layers(sections: SwitchboardServerConfiguration.sections, environment: [:])
        }
        #expect(missing?.description == "cannot read configuration file /nonexistent/switchboard.conf: No such file or directory")
        let big = try temporaryFile(String(repeating: "# padding\n", count: ConfigurationFile.maxBytes / 10 + 1))
        defer { unlink(big) }
        #expect(throws: ConfigurationError(origin: nil, message: "configuration file \(big) is larger than \(ConfigurationFile.maxBytes) bytes")) {
            _ = try ConfigurationFile.contents(big)
        }
    }
}
