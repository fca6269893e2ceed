import Synchronization

/// The handlers of one direction (client, server or remote client) of one node.
///
/// Registration may happen from any task at any time (usually once, when the node is created);
/// lookups happen on the node's shard per request. A mutex keeps both simple: registration is
/// rare and lookups are short, so it is effectively uncontended.
final class RPCHandlerRegistry: Sendable {
    private struct Entry {
        let sequence: Int
        let pattern: [UInt8]?  // nil: exact name (in `exact`)
        let handler: RPCHandler
    }
    private struct State {
        var exact: [String: [Entry]] = [:]
        var patterns: [Entry] = []
        var nextSequence = 0
    }
    private let state = Mutex(State())

    /// Adds a handler for `name`; a name containing `*` is a pattern where each `*` matches any
    /// run of characters (possibly empty), e.g. `user.*` or `*`.
    func add(_ name: String, _ handler: @escaping RPCHandler) {
        state.withLock { s in
            let e = Entry(sequence: s.nextSequence, pattern: name.contains("*") ? Array(name.utf8) : nil, handler: handler)
            s.nextSequence += 1
            if e.pattern != nil { s.patterns.append(e) } else { s.exact[name, default: []].append(e) }
        }
    }

    /// Every handler whose name or pattern matches, in the order they were added.
    func handlers(for name: String) -> [RPCHandler] {
        state.withLock { s in
            let exact = s.exact[name] ?? []
            if s.patterns.isEmpty { return exact.map(\.handler) }
            let bytes = Array(name.utf8)
            let matching = s.patterns.filter { RPCHandlerRegistry.glob($0.pattern!, bytes) }
            if matching.isEmpty { return exact.map(\.handler) }
            return (exact + matching).sorted { $0.sequence < $1.sequence }.map(\.handler)
        }
    }

    /// `*` matches any run of bytes (UTF-8 sequences stay whole because only `*` is special).
    /// Iterative with one backtrack point: O(pattern × name) at worst, no recursion.
    static func glob(_ pattern: [UInt8], _ name: [UInt8]) -> Bool {
        var p = 0, n = 0
        var star = -1, mark = 0
        while n < name.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                mark = n
                p += 1
            } else if p < pattern.count, pattern[p] == name[n] {
                p += 1
                n += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                n = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}

/// Runs a handler chain as the reference's emitter does: each handler in order, `ctx.result`
/// set to each return value; the first throw ends the chain.
enum RPCChain {
    static func run(_ handlers: [RPCHandler], _ ctx: RPCContext, _ args: [RPCValue]) async -> Result<RPCValue, RPCErrorPayload> {
        do {
            for h in handlers { ctx.result = try await h(ctx, args) }
            return .success(ctx.result)
        } catch {
            return .failure(RPCError.payload(of: error))
        }
    }
}
