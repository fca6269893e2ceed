/// Upper bounds the parser enforces on every part of a request.
///
/// Every buffer the parser keeps is bounded by one of these, so a peer can never make
/// a connection hold more than `maxHeaderBytes + maxBodyBytes` bytes.
public struct HTTPLimits: Sendable {
    /// Longest request line accepted, excluding its CRLF. Longer → ``HTTPParseError/uriTooLong`` (414).
    public var maxRequestLineBytes: Int
    /// Longest head accepted: request line, header lines and the terminating empty line,
    /// CRLFs included. Chunked trailers count toward it too. Longer → ``HTTPParseError/headersTooLarge`` (431).
    public var maxHeaderBytes: Int
    /// Most header fields accepted (trailer fields included). More → ``HTTPParseError/headersTooLarge`` (431).
    public var maxHeaderCount: Int
    /// Largest body accepted, from `Content-Length` or the sum of chunk sizes. Larger → ``HTTPParseError/bodyTooLarge`` (413).
    public var maxBodyBytes: Int
    /// Longest chunk-size line (size plus extensions, excluding CRLF). Longer → ``HTTPParseError/badRequest(_:)`` (400).
    public var maxChunkLineBytes: Int

    /// Creates limits; the defaults suit a public-facing API server.
    public init(
        maxRequestLineBytes: Int = 8192,
        maxHeaderBytes: Int = 16384,
        maxHeaderCount: Int = 100,
        maxBodyBytes: Int = 1 << 20,
        maxChunkLineBytes: Int = 1024
    ) {
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineBytes = maxChunkLineBytes
    }
}
