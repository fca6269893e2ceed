/// A module's typed configuration, readable from the `key = value` file, the environment and
/// the command line. Each module owns its section: the core's is `BrokerConfiguration`, a
/// protocol declares its own (e.g. `ConnectionBrokerOptions`), and an executable composes the
/// sections it serves with `LayeredConfiguration`.
///
/// Keys are lower-case `snake_case` and unique across the sections an executable composes;
/// the environment variable of a key is `SWITCHBOARD_` followed by the key in upper case.
public protocol ConfigurationSection: Sendable {
    /// Every key the section accepts, with its documentation, in the order the example file
    /// lists them.
    static var keys: [(key: String, help: String)] { get }
    /// The current value of a key, as the configuration file writes it (strings that may be
    /// empty are quoted); nil for a key of another section.
    func value(forKey key: String) -> String?
    /// Sets a key from its textual value. Throws a `ConfigurationError` (with line 0: the
    /// caller knows where the value came from) for a bad value or an unknown key.
    mutating func set(_ key: String, _ value: String) throws(ConfigurationError)
    /// A problem between values (a range, a relation between two keys), or nil.
    func validate() -> String?
}

extension ConfigurationSection {
    /// A configuration file documenting every key of the section at its current value.
    public func exampleFile() -> String {
        var out = ""
        for (key, help) in Self.keys {
            out += "# \(help)\n\(key) = \(value(forKey: key) ?? "")\n\n"
        }
        return out
    }

    /// Whether the section declares `key`.
    public static func declares(_ key: String) -> Bool { keys.contains { $0.key == key } }
}
