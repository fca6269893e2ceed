/// Where a configuration value came from; errors name it.
public enum ConfigurationOrigin: Sendable, Equatable, CustomStringConvertible {
    /// A line of a configuration file (`path` nil when the text came from elsewhere).
    case file(path: String?, line: Int)
    /// An environment variable, e.g. `SWITCHBOARD_PORT`.
    case environment(variable: String)
    /// A command-line flag, e.g. `--port` or `--set`.
    case commandLine(flag: String)

    public var description: String {
        switch self {
        case .file(nil, let line): return "line \(line)"
        case .file(let path?, let line): return "\(path): line \(line)"
        case .environment(let variable): return "environment variable \(variable)"
        case .commandLine(let flag): return "option \(flag)"
        }
    }
}

/// One `key = value` from one layer.
public struct ConfigurationSetting: Sendable, Equatable {
    public var key: String
    public var value: String
    public var origin: ConfigurationOrigin
}

/// The layers of an executable's configuration, lowest precedence first:
///
/// | layer | form | example |
/// |---|---|---|
/// | defaults | each section's initial values | `port` 3004 |
/// | configuration file | `key = value` lines, `#` comments | `port = 4000` |
/// | environment | `SWITCHBOARD_` + key in upper case | `SWITCHBOARD_PORT=4001` |
/// | command line | the executable's flags and `--set key=value` | `--port 4002` |
///
/// Every key must belong to one of the composed sections: an unknown key in the file or on the
/// command line is an error naming its line or flag. An environment variable with the
/// `SWITCHBOARD_` prefix that names no key is ignored and listed in
/// `ignoredEnvironmentVariables` (the prefix is shared with build and test tooling, e.g.
/// `SWITCHBOARD_FUZZ`; the executables log a warning for each).
///
/// Layers are collected first, then `apply(to:)` hands each section the settings of its own
/// keys in precedence order, so a later layer overrides an earlier one key by key.
public struct LayeredConfiguration: Sendable {
    /// Prefix of the environment variables read.
    public static let environmentPrefix = "SWITCHBOARD_"

    /// Every key of the composed sections.
    public let knownKeys: [String]
    /// Settings in precedence order (a later one wins).
    public private(set) var settings: [ConfigurationSetting] = []
    /// `SWITCHBOARD_*` variables that name no key, sorted.
    public private(set) var ignoredEnvironmentVariables: [String] = []

    /// - Parameter sections: every section the executable composes; their keys must not overlap.
    public init(sections: [any ConfigurationSection.Type]) {
        var keys: [String] = []
        for section in sections {
            for (key, _) in section.keys {
                precondition(!keys.contains(key), "configuration key \(key) declared by two sections")
                keys.append(key)
            }
        }
        knownKeys = keys
    }

    /// The environment variable of `key`: `port` -> `SWITCHBOARD_PORT`.
    public static func environmentVariable(forKey key: String) -> String {
        environmentPrefix + key.uppercased()
    }

    /// Adds a configuration file's settings. Syntax errors and unknown keys throw, naming the
    /// line (and `path` when given); values are checked by `apply(to:)`, also naming the line.
    public mutating func addFile(_ text: String, path: String? = nil) throws(ConfigurationError) {
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let origin = ConfigurationOrigin.file(path: path, line: lineNumber)
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingWhitespace()
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw ConfigurationError(origin: origin, message: "expected key = value")
            }
            let key = String(trimmed[..<eq].trimmingWhitespace())
            var value = String(trimmed[trimmed.index(after: eq)...].trimmingWhitespace())
            if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            try add(key, value, origin)
        }
    }

    /// Adds the `SWITCHBOARD_*` variables of `environment` (e.g. `ProcessEnvironment.current`).
    /// Values are taken verbatim (no quotes to strip).
    public mutating func addEnvironment(_ environment: [String: String]) {
        var byVariable: [String: String] = [:]
        for key in knownKeys { byVariable[Self.environmentVariable(forKey: key)] = key }
        var ignored: [String] = []
        // Sorted so that the layer is deterministic whatever the dictionary's order.
        for (variable, value) in environment.sorted(by: { $0.key < $1.key }) where variable.hasPrefix(Self.environmentPrefix) {
            if let key = byVariable[variable] {
                settings.append(ConfigurationSetting(key: key, value: value, origin: .environment(variable: variable)))
            } else {
                ignored.append(variable)
            }
        }
        ignoredEnvironmentVariables = ignored
    }

    /// Adds one command-line setting; `flag` names it in errors (`--port`, `--set`).
    public mutating func addCommandLine(key: String, value: String, flag: String) throws(ConfigurationError) {
        try add(key, value, .commandLine(flag: flag))
    }

    /// Adds a `--set key=value` argument.
    public mutating func addAssignment(_ assignment: String, flag: String = "--set") throws(ConfigurationError) {
        guard let eq = assignment.firstIndex(of: "=") else {
            throw ConfigurationError(origin: .commandLine(flag: flag), message: "expected key=value, got '\(assignment)'")
        }
        let key = String(Substring(assignment[..<eq]).trimmingWhitespace())
        let value = String(assignment[assignment.index(after: eq)...])
        try add(key, value, .commandLine(flag: flag))
    }

    /// Adds one setting of a layer of the executable's own (e.g. the broadcaster's compatibility
    /// mode, which reads another program's environment); `origin` names it in errors.
    public mutating func add(key: String, value: String, origin: ConfigurationOrigin) throws(ConfigurationError) {
        try add(key, value, origin)
    }

    private mutating func add(_ key: String, _ value: String, _ origin: ConfigurationOrigin) throws(ConfigurationError) {
        guard knownKeys.contains(key) else { throw ConfigurationError(origin: origin, message: "unknown option '\(key)'") }
        settings.append(ConfigurationSetting(key: key, value: value, origin: origin))
    }

    /// Sets, in precedence order, every setting whose key `section` declares. A bad value
    /// throws naming its origin (file line, variable or flag).
    public func apply<Section: ConfigurationSection>(to section: inout Section) throws(ConfigurationError) {
        for setting in settings where Section.declares(setting.key) {
            do {
                try section.set(setting.key, setting.value)
            } catch {
                throw ConfigurationError(origin: setting.origin, message: error.message)
            }
        }
    }

    /// `defaults` with every layer applied, then validated.
    public func resolve<Section: ConfigurationSection>(_ defaults: Section) throws(ConfigurationError) -> Section {
        var section = defaults
        try apply(to: &section)
        if let problem = section.validate() {
            throw ConfigurationError(origin: nil, message: "invalid configuration: \(problem)")
        }
        return section
    }
}
