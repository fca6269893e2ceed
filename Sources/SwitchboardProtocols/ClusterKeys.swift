import SwitchboardRESP
import SwitchboardCluster

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

    /// The arguments both protocols' clean-up scripts end with (`nodeDied` of
    /// `ConnectionBrokerRoleScripts` and of `RPCClusterKeys`): the incarnation that died (nil:
    /// every one) and the one kept (nil: none), each empty for nil; the step's `HSCAN` cursor;
    /// its `COUNT`, `batchEntries` (`cluster_cleanup_batch_entries`).
    static func cleanUpArguments(dead: UInt64?, keep: UInt64?, cursor: [UInt8], batchEntries: Int) -> [[UInt8]] {
        assert(ClusterConfiguration.cleanUpBatchEntriesRange.contains(batchEntries), "validated: cluster_cleanup_batch_entries")
        return [dead.map { Array(String($0).utf8) } ?? [], keep.map { Array(String($0).utf8) } ?? [], cursor, Array(String(batchEntries).utf8)]
    }

    /// The `HSCAN` cursor a clean-up starts from, and the one Redis answers once it is done.
    static let firstCursor: [UInt8] = [UInt8(ascii: "0")]

    /// Whether `bytes` is an `HSCAN` cursor: one or more decimal digits.
    static func isCursor(_ bytes: [UInt8]) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// A clean-up step's answer: the `HSCAN` cursor to go on from ("0": done) and what it
    /// removed; nil for no answer (Redis away) or a malformed one.
    static func cleanUpStep(_ reply: RESPValue?) -> (cursor: [UInt8], removed: Int)? {
        guard case .array(let parts)? = reply, parts.count == 2, case .bulkString(let cursor) = parts[0], isCursor(cursor),
              case .integer(let removed) = parts[1], removed >= 0 else { return nil }
        return (cursor, Int(removed))
    }

    /// Runs a clean-up script one `HSCAN` step at a time: `command(cursor)` from `cursor` (a
    /// fresh clean-up: "0") until Redis's cursor comes back "0", then `done` with the entries
    /// removed in all and nil. A step Redis did not answer (no reply: the connection is down, or
    /// its command queue full; or an error reply: a Redis loading, failing over, busy) ends it
    /// early: `done` with what was removed so far and that step's cursor, to go on from later
    /// (`UnfinishedCleanUps`). A malformed answer ends it too, with nil: sending the step again
    /// would only get the same answer. `send` is the caller's Redis command (its shard's
    /// connection), so every step runs on the same shard, one after the other.
    static func cleanUpInSteps(_ command: @escaping ([UInt8]) -> [[UInt8]],
                               send: @escaping ([[UInt8]], @escaping (RESPValue?) -> Void) -> Void,
                               from cursor: [UInt8] = firstCursor, removed: Int = 0,
                               done: @escaping (_ removed: Int, _ unanswered: [UInt8]?) -> Void) {
        send(command(cursor)) { reply in
            switch reply {
            case nil, .simpleError?, .bulkError?: return done(removed, cursor)
            default: break
            }
            guard let step = cleanUpStep(reply) else { return done(removed, nil) }
            let total = removed &+ step.removed
            if step.cursor == firstCursor { return done(total, nil) }
            cleanUpInSteps(command, send: send, from: step.cursor, removed: total, done: done)
        }
    }
}
