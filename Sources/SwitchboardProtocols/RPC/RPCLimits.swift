/// Bounds on what one RPC message may carry, checked by `RPCMessageDecoder` before anything
/// is materialized. (The WebSocket layer's `maxMessageBytes` bounds the whole message first.)
/// A message over a limit is answered with a `protocol` error naming the limit, and the
/// connection keeps working.
public struct RPCLimits: Sendable, Equatable {
    public static let defaultMaxDepth = 64

    /// Containers nested in one message, the message object itself counting as 1 (so `args`
    /// is depth 2 and an argument that is an object is depth 3). Default 64. The reference
    /// server crashes its process on deeply nested input; this bound keeps every parse
    /// iterative-validated and every recursive step shallow.
    public var maxDepth: Int = RPCLimits.defaultMaxDepth
    /// UTF-8 bytes of a request `name`. Default 256.
    public var maxNameBytes: Int = 256
    /// Bytes of a request's raw `args` JSON text. Default 1 MiB.
    public var maxArgsBytes: Int = 1 << 20
    /// Bytes of a `correlationId`'s JSON text (a string with its quotes, or a number).
    /// Default 256 (a UUID is 38).
    public var maxCorrelationIdBytes: Int = 256

    public init() {}

    /// A description of the first invalid field, or nil when every limit is usable.
    public func validate() -> String? {
        if maxDepth < 3 || maxDepth > 1024 { return "rpc maxDepth must be in 3...1024 (args hold values), got \(maxDepth)" }
        if maxNameBytes < 1 || maxNameBytes > 1 << 16 { return "rpc maxNameBytes must be in 1...65536, got \(maxNameBytes)" }
        if maxArgsBytes < 2 { return "rpc maxArgsBytes must be at least 2 (\"[]\"), got \(maxArgsBytes)" }
        if maxCorrelationIdBytes < 3 || maxCorrelationIdBytes > 1 << 16 {
            return "rpc maxCorrelationIdBytes must be in 3...65536, got \(maxCorrelationIdBytes)"
        }
        return nil
    }
}
