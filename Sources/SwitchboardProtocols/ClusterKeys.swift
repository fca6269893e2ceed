/// The Redis keys of one protocol's cluster-wide state under `cluster_key_prefix`, and the
/// command that runs a script on them: every key is `PREFIX:{TAG}:KIND:NAME` (or
/// `PREFIX:{TAG}:KIND`), so all of a protocol's keys share the hash tag `{TAG}`: one Redis
/// Cluster slot, one master, and any script may touch several of them.
///
/// The protocols' own key sets (`RPCClusterKeys`: `{rpc}`, `ConnectionBrokerRoleKeys`:
/// `{cb}`) are built from it. (The broadcaster's channels are the cluster engine's: their names
/// are `ClusterChannelNames`'.)
struct ClusterKeys: Sendable {
    /// `PREFIX:{TAG}:`.
    private let tagged: [UInt8]

    init(keyPrefix: String, tag: String) {
        precondition(!tag.isEmpty && !tag.contains("{") && !tag.contains("}"), "a hash tag of its own")
        tagged = Array("\(keyPrefix):{\(tag)}:".utf8)
    }

    /// `PREFIX:{TAG}:KIND:` (a script adds the name itself).
    func prefix(_ kind: String) -> [UInt8] { tagged + Array(kind.utf8) + [UInt8(ascii: ":")] }

    /// `PREFIX:{TAG}:KIND:NAME`.
    func key(_ kind: String, _ name: String) -> [UInt8] { prefix(kind) + Array(name.utf8) }

    /// `PREFIX:{TAG}:KIND` (a key of its own, no name).
    func key(_ kind: String) -> [UInt8] { tagged + Array(kind.utf8) }

    /// `EVAL script numkeys keys... arguments...`.
    static func eval(_ script: String, keys: [[UInt8]], _ arguments: [[UInt8]]) -> [[UInt8]] {
        [Array("EVAL".utf8), Array(script.utf8), Array(String(keys.count).utf8)] + keys + arguments
    }
}
