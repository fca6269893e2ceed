import Switchboard
#if canImport(Glibc)
import Glibc
#endif

/// Reading configuration inputs from the process: the file and the environment.
public enum ConfigurationFile {
    /// A configuration file is small: a larger file is refused rather than read whole.
    public static let maxBytes = 1 << 20

    /// The file's text, or nil when it cannot be read or is over `maxBytes`.
    public static func read(_ path: String) -> String? {
        try? contents(path)
    }

    /// The file's text; throws naming the file when it cannot be opened or is over `maxBytes`.
    public static func contents(_ path: String) throws(ConfigurationError) -> String {
        guard let f = fopen(path, "rb") else {
            throw ConfigurationError(origin: nil, message: "cannot read configuration file \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if bytes.count > maxBytes {
                throw ConfigurationError(origin: nil, message: "configuration file \(path) is larger than \(maxBytes) bytes")
            }
            if n < chunk.count { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The process environment (`environ`).
    public static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                out[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return out
    }

    /// A configuration file documenting every key of `sections` at its value there: a header,
    /// then each section under its title. `Config/switchboard.example.conf` is this text for the
    /// `switchboard` executable (a test keeps them equal).
    public static func example(_ sections: [(title: String, section: any ConfigurationSection)]) -> String {
        var out = """
        # Switchboard configuration: every option, set to its default.
        # Format: key = value; '#' starts a comment. Unknown keys and bad values stop start-up
        # with the line number. Layers, lowest first: defaults, this file (--config), environment
        # variables SWITCHBOARD_<KEY IN UPPER CASE> (e.g. SWITCHBOARD_PORT), command-line flags
        # (--port, --host, --io-backend, --shards, --set key=value).
        # Limits: crossing one gives a precise error (HTTP status, close) and a metric, never a crash.


        """
        for (title, section) in sections {
            out += "# ---- \(title) ----\n\n" + section.exampleFile()
        }
        return out
    }

    /// `key<TAB>help` lines for `--print-config-keys`.
    public static func keyList(_ sections: [any ConfigurationSection.Type]) -> String {
        var out = ""
        for section in sections {
            for (key, help) in section.keys { out += "\(key)\t\(help)\n" }
        }
        return out
    }
}
