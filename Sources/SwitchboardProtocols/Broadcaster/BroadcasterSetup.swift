#if canImport(Glibc)
import Glibc
#endif

/// How the `switchboard` executable turns its inputs into `BroadcasterOptions`, kept here so
/// that the executable's hunk stays a few lines.
///
/// Precedence: `broadcaster_*` keys from the configuration file, then `SWITCHBOARD_BROADCASTER_*`
/// environment variables. Compatibility mode (the reference's own environment: `PORT`,
/// `JWT_SECRET`, `API_KEYS`, `BASE_PATH`) is on when the executable is started under the name
/// `broadcaster` (a symlink: an existing deployment switches by replacing only the binary) or
/// with `SWITCHBOARD_BROADCASTER_COMPAT=1`.
public enum BroadcasterSetup {
    public struct Resolved: Sendable {
        public var options: BroadcasterOptions
        public var enabled: Bool
        /// The port compatibility mode asks for (`PORT`, default 8000); nil otherwise.
        public var port: Int?
    }

    /// Splits the `broadcaster_*` lines out of a configuration file's text. They become blank
    /// lines in the rest, so the broker's parser still reports the right line numbers.
    public static func extract(configurationText text: String) -> (values: [String: String], rest: String) {
        var values: [String: String] = [:]
        var rest: [Substring] = []
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            guard let eq = line.firstIndex(of: "=") else { rest.append(rawLine); continue }
            let key = String(line[..<eq]).trimmingSpaces()
            guard key.hasPrefix("broadcaster_") else { rest.append(rawLine); continue }
            var value = String(line[line.index(after: eq)...]).trimmingSpaces()
            if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            values[key] = value
            rest.append("")
        }
        return (values, rest.joined(separator: "\n"))
    }

    /// Resolves the options from the file's values, the environment and the executable's name.
    public static func resolve(fileValues: [String: String], environment: [String: String], executablePath: String,
                               readFile: (String) -> String?) throws(BroadcasterConfigurationError) -> Resolved {
        let name = executablePath.split(separator: "/").last.map(String.init) ?? executablePath
        if name == "broadcaster" || environment["SWITCHBOARD_BROADCASTER_COMPAT"] == "1" {
            let (options, port) = try BroadcasterOptions.referenceCompatible(environment: environment)
            return Resolved(options: options, enabled: true, port: port)
        }
        var values = fileValues
        values.merge(BroadcasterOptions.values(fromEnvironment: environment)) { _, fromEnvironment in fromEnvironment }
        let (options, enabled) = try BroadcasterOptions.parse(values, readFile: readFile)
        return Resolved(options: options, enabled: enabled, port: nil)
    }

    /// This process's environment (without Foundation).
    public static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        #if canImport(Glibc)
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") { out[String(text[..<eq])] = String(text[text.index(after: eq)...]) }
            p += 1
        }
        #endif
        return out
    }
}
