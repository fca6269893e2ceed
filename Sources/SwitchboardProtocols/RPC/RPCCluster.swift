import Switchboard
import SwitchboardRESP

// # RPC across nodes (issue 13)
//
// With `cluster_engine = redis`, a node id is reachable from every process. The client form
// (`node.client.send`) never leaves its node: the node object lives where its socket is. The
// server and remote-client forms (`node.server.send(to:)`, `node.remoteClient.send(to:)`)
// look the target id up as on one node (its owner shard's directory); when no node of this
// process has it:
//
// 1. the caller's shard asks Redis which processes have the id (`P:{rpc}:id:ID`, a set of
//    cluster node numbers, kept by each process's owner shard: added with the id's first
//    local node, removed with its last; a write Redis did not answer is written again every
//    `clusterDirectoryRetryMilliseconds`, and every owned id is written again when the
//    shard's Redis connection comes up again (a restarted Redis lost them), after the other
//    processes declared this one dead while it lived (their clean-up removed them), and every
//    `clusterDirectoryRefreshMilliseconds`);
// 2. it sends the call to each of them through their node inboxes (the caller's shard, its
//    own Redis connection);
// 3. the receiving process's shard 0 hands it to the id's owner shard, which serves it
//    exactly as a local call (server handlers, or remote-client handlers then the client);
// 4. the answer travels back the same way to the caller's shard, which completes the request
//    (the first answer wins, as with duplicate ids on one node).
//
// Every request keeps its timeout (`requestTimeoutMilliseconds` or the caller's), so an answer
// lost between processes never leaves a caller waiting past it. When a process is declared
// dead (`RPCServer.nodeDied`), requests waiting only on it fail at once with `.disconnected`,
// and the ids its dead incarnation wrote leave the Redis directory (`P:{rpc}:owned:N` maps
// each id node N announced to the incarnation that wrote it, `ShardContext.clusterIncarnation`).
// So a clean-up that runs late (after the node restarted and announced its ids again, or heard
// of its own death and wrote them back under its new incarnation) leaves the new entries.
//
// Not cluster-wide: the duplicate-id policy (`duplicateNodes`) applies per process; ids
// registered on two processes are both reachable. Not ordered: requests are independent, as on
// one node.

/// The protocol tag of RPC messages in a node inbox.
let rpcClusterTag = UInt8(ascii: "R")

/// RPC messages between processes: a call (op 1: kind, caller shard, caller key, caller node,
/// sender, target, then the request as RPC JSON) or an answer (op 2: shard, key, then a
/// response or error as RPC JSON).
enum RPCClusterWire {
    enum Decoded {
        case call(RPCNodeCall)
        case answer(shard: Int, key: UInt64, Result<RPCValue, RPCError>)
    }

    static func call(_ call: RPCNodeCall) -> [UInt8] {
        precondition(call.callerShard < 256 && (call.callerNode ?? 0) < 256)
        var out: [UInt8] = [1, call.kind == .server ? 0 : 1, UInt8(call.callerShard)]
        u64(call.callerKey, &out)
        out.append(UInt8(call.callerNode ?? 0))
        text(call.sender, &out)
        text(call.target, &out)
        out += RPCMessageEncoder.encode(.request(RPCRequest(name: call.name, args: call.args, correlationId: RPCCorrelationID(requestKey: 0))))
        return out
    }

    static func answer(shard: Int, key: UInt64, _ result: Result<RPCValue, RPCError>) -> [UInt8] {
        precondition(shard < 256)
        var out: [UInt8] = [2, UInt8(shard)]
        u64(key, &out)
        let id = RPCCorrelationID(requestKey: 0)
        switch result {
        case .success(let v): out += RPCMessageEncoder.encode(.response(correlationId: id, result: v))
        case .failure(let e): out += RPCMessageEncoder.encode(.error(correlationId: id, e.payload))
        }
        return out
    }

    /// nil for anything malformed (counted by the caller).
    static func decode(_ bytes: UnsafeRawBufferPointer, decoder: RPCMessageDecoder) -> Decoded? {
        var i = 0
        func byte() -> UInt8? {
            guard i < bytes.count else { return nil }
            defer { i += 1 }
            return bytes[i]
        }
        func word() -> UInt64? {
            guard bytes.count - i >= 8 else { return nil }
            var v: UInt64 = 0
            for k in 0..<8 { v = v << 8 | UInt64(bytes[i + k]) }
            i += 8
            return v
        }
        func string() -> String? {
            guard bytes.count - i >= 4 else { return nil }
            var n = 0
            for k in 0..<4 { n = n << 8 | Int(bytes[i + k]) }
            guard bytes.count - i - 4 >= n else { return nil }
            defer { i += 4 + n }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(i + 4)..<(i + 4 + n)]), as: UTF8.self)
        }
        func message() -> RPCMessage? {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[i...])
            return try? rest.withMemoryRebound(to: UInt8.self) { decoder.decode(binary: $0) }.get()
        }
        switch byte() {
        case 1?:
            guard let kind = byte(), kind <= 1, let shard = byte(), let key = word(), let node = byte(),
                  let sender = string(), let target = string(), case .request(let r)? = message() else { return nil }
            return .call(RPCNodeCall(kind: kind == 0 ? .server : .remoteClient, name: r.name, args: r.args, sender: sender, target: target,
                                     callerShard: Int(shard), callerKey: key, callerNode: Int(node)))
        case 2?:
            guard let shard = byte(), let key = word() else { return nil }
            switch message() {
            case .response(_, let v)?: return .answer(shard: Int(shard), key: key, .success(v))
            case .error(_, let payload)?: return .answer(shard: Int(shard), key: key, .failure(RPCError(received: payload)))
            default: return nil
            }
        default:
            return nil
        }
    }

    private static func u64(_ v: UInt64, _ out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    private static func text(_ s: String, _ out: inout [UInt8]) {
        let u = Array(s.utf8)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: u.count >> shift)) }
        out += u
    }
}

/// The RPC directory's Redis keys (one hash tag, `{rpc}`, one Redis Cluster slot) and scripts.
struct RPCClusterKeys {
    private let keys: ClusterKeys
    /// A clean-up step's `HSCAN COUNT` (`cluster_cleanup_batch_entries`).
    private let cleanUpBatchEntries: Int

    init(prefix: String, cleanUpBatchEntries: Int) {
        keys = ClusterKeys(keyPrefix: prefix, tag: "rpc")
        self.cleanUpBatchEntries = cleanUpBatchEntries
    }

    /// `P:{rpc}:id:` (the node-died script adds each id).
    var idPrefix: [UInt8] { keys.prefix("id") }
    func id(_ id: String) -> [UInt8] { keys.key("id", id) }
    /// `P:{rpc}:owned:N`: hash of the ids node N announced -> the incarnation that wrote each.
    func owned(_ node: Int) -> [UInt8] { keys.key("owned", String(node)) }
    /// `P:{rpc}:node:N`: the ids node N announced, as a build before the incarnation tags kept
    /// them (a set); only read and deleted, by the clean-up script.
    func olderBuildNode(_ node: Int) -> [UInt8] { keys.key("node", String(node)) }

    static func eval(_ script: String, keys: [[UInt8]], _ arguments: [[UInt8]]) -> [[UInt8]] {
        ClusterKeys.eval(script, keys: keys, arguments)
    }

    /// One step (from `cursor`) of the clean-up script (`nodeDied`) for the ids node `node`
    /// announced under incarnation `dead` (nil: every one), except those `keep` wrote (nil: none).
    func nodeDied(_ node: Int, dead: UInt64?, keep: UInt64?, cursor: [UInt8]) -> [[UInt8]] {
        Self.eval(Self.nodeDied, keys: [owned(node), olderBuildNode(node)],
                  [idPrefix, Array(String(node).utf8)] + ClusterKeys.cleanUpArguments(dead: dead, keep: keep, cursor: cursor, batchEntries: cleanUpBatchEntries))
    }

    /// KEYS: id set, node's owned hash. ARGV: node, id, the writer's incarnation.
    static let announce = """
        redis.call('SADD', KEYS[1], ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
        return 1
        """
    /// KEYS: id set, node's owned hash. ARGV: node, id.
    static let withdraw = """
        redis.call('SREM', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[2])
        return 1
        """
    /// Many ids in one call (a retry or a refresh). KEYS: node's owned hash. ARGV: id key
    /// prefix, node, the writer's incarnation, the number of ids to add, the ids to add, then
    /// the ids to remove. The id keys are built from the prefix, as in `nodeDied`: they share
    /// the `{rpc}` tag, so one slot.
    static let sync = """
        local added = tonumber(ARGV[4])
        for i = 5, #ARGV do
          if i < 5 + added then
            redis.call('SADD', ARGV[1] .. ARGV[i], ARGV[2])
            redis.call('HSET', KEYS[1], ARGV[i], ARGV[3])
          else
            redis.call('SREM', ARGV[1] .. ARGV[i], ARGV[2])
            redis.call('HDEL', KEYS[1], ARGV[i])
          end
        end
        return #ARGV - 4
        """
    /// KEYS: node's owned hash, node's set of an older build. ARGV: id key prefix, node, the
    /// incarnation that died (empty: every incarnation, for a death declared by hand), an
    /// incarnation to keep (empty: none; at a connect, the process's own: the ids of the node's
    /// earlier processes go), the `HSCAN` cursor of this step ("0" for the first), the step's
    /// `COUNT` (`cluster_cleanup_batch_entries`). The ids it wrote among the entries this step
    /// reads leave the directory. `{next cursor, removed}`: the caller runs steps until the
    /// cursor is "0" (`ClusterKeys.cleanUpInSteps`), so Redis serves others between them.
    ///
    /// The second key is what a build before the incarnation tags kept instead of the hash
    /// (`P:{rpc}:node:N`, a set of ids with no writer recorded); the first step takes it whole.
    /// An id there that the hash does not hold leaves the directory, as that build's own
    /// clean-up did, and the set is deleted.
    static let nodeDied = """
        local scan = redis.call('HSCAN', KEYS[1], ARGV[5], 'COUNT', ARGV[6])
        local entries = scan[2]
        local removed = 0
        for i = 1, #entries, 2 do
          if (ARGV[3] == '' or entries[i + 1] == ARGV[3]) and entries[i + 1] ~= ARGV[4] then
            redis.call('SREM', ARGV[1] .. entries[i], ARGV[2])
            redis.call('HDEL', KEYS[1], entries[i])
            removed = removed + 1
          end
        end
        if ARGV[5] == '0' then
          for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
            if redis.call('HEXISTS', KEYS[1], id) == 0 then
              removed = removed + redis.call('SREM', ARGV[1] .. id, ARGV[2])
            end
          end
          redis.call('DEL', KEYS[2])
        end
        return {scan[1], removed}
        """
}
