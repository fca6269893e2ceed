/// Negotiated permessage-deflate parameters (RFC 7692).
package struct PerMessageDeflateParameters: Sendable, Equatable {
    /// The server resets its compressor after every message.
    package var serverNoContextTakeover: Bool
    /// The client resets its compressor after every message, so our inflater may too.
    package var clientNoContextTakeover: Bool
    /// LZ77 window the server may use, 8...15.
    ///
    /// zlib's raw deflate cannot use an 8-bit window (it silently needs 9). When 8 is negotiated
    /// the compressor runs with 9 bits but Huffman-only strategy, which emits no back-references
    /// at all, so the stream never refers further back than the peer's 256-byte window allows.
    package var serverMaxWindowBits: Int
    /// LZ77 window the client may use, 8...15; our inflater uses exactly this.
    package var clientMaxWindowBits: Int

    /// Creates parameters; the defaults are RFC 7692's (context takeover, 15-bit windows).
    package init(
        serverNoContextTakeover: Bool = false, clientNoContextTakeover: Bool = false,
        serverMaxWindowBits: Int = 15, clientMaxWindowBits: Int = 15
    ) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
    }
}
