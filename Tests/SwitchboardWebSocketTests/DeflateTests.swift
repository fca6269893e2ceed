import Testing
import CZlib
@testable import SwitchboardWebSocket

/// A client-side raw deflater/inflater written directly against zlib, independent of the codec.
final class TestZlib {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    let isDeflate: Bool

    init(deflateBits: Int? = nil, inflateBits: Int? = nil) {
        stream.initialize(to: z_stream())
        if let deflateBits {
            isDeflate = true
            _ = sb_deflate_init(stream, 6, Int32(-deflateBits), 8)
        } else {
            isDeflate = false
            _ = sb_inflate_init(stream, Int32(-(inflateBits ?? 15)))
        }
    }

    deinit {
        if isDeflate { deflateEnd(stream) } else { inflateEnd(stream) }
        stream.deallocate()
    }

    /// Runs input through with Z_SYNC_FLUSH; for deflate, strips the 00 00 FF FF tail.
    func process(_ input: [UInt8]) -> [UInt8] {
        var input = input
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.pointee.next_in = inBuf.baseAddress
            stream.pointee.avail_in = uInt(inBuf.count)
            repeat {
                let produced: Int = buffer.withUnsafeMutableBufferPointer { out in
                    stream.pointee.next_out = out.baseAddress
                    stream.pointee.avail_out = uInt(out.count)
                    _ = isDeflate ? deflate(stream, Z_SYNC_FLUSH) : inflate(stream, Z_SYNC_FLUSH)
                    return out.count - Int(stream.pointee.avail_out)
                }
                output += buffer[..<produced]
            } while stream.pointee.avail_out == 0
        }
        if isDeflate && output.suffix(4) == [0, 0, 0xFF, 0xFF] { output.removeLast(4) }
        return output
    }
}

private let sample = Array(String(repeating: "Hello, permessage-deflate! ", count: 40).utf8)

/// Parses one unmasked server frame: (first byte, payload).
private func parseServerFrame(_ bytes: [UInt8]) -> (UInt8, [UInt8]) {
    var length = Int(bytes[1] & 0x7F)
    var offset = 2
    if length == 126 { length = Int(bytes[2]) << 8 | Int(bytes[3]); offset = 4 }
    else if length == 127 { length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }; offset = 10 }
    #expect(bytes.count == offset + length)
    return (bytes[0], Array(bytes[offset...]))
}

@Suite struct DeflateTests {
    @Test(arguments: [false, true])
    func receiveCompressedWithContextTakeover(_ byteByByte: Bool) {
        let client = TestZlib(deflateBits: 15)
        let first = client.process(sample)
        let second = client.process(sample)  // refers back into the first message
        #expect(second.count < first.count)
        let stream = frame(1, first, rsv: 4) + frame(2, second, rsv: 4)
        let events = run(stream, byteByByte: byteByByte, deflate: PerMessageDeflateParameters())
        #expect(events == [.text(sample), .binary(sample)])
    }

    @Test func receiveCompressedFragmented() {
        let client = TestZlib(deflateBits: 15)
        let compressed = client.process(sample)
        let half = compressed.count / 2
        let stream = frame(1, Array(compressed[..<half]), fin: false, rsv: 4) + frame(9, [1])
            + frame(0, Array(compressed[half...]))
        #expect(run(stream, chunk: 3, deflate: PerMessageDeflateParameters()) == [.write([0x8A, 1, 1]), .text(sample)])
    }

    @Test func clientNoContextTakeoverResetsInflater() {
        let parameters = PerMessageDeflateParameters(clientNoContextTakeover: true, clientMaxWindowBits: 9)
        var stream: [UInt8] = []
        for _ in 0..<3 {
            let client = TestZlib(deflateBits: 9)  // a fresh compressor per message, as the client must
            stream += frame(1, client.process(sample), rsv: 4)
        }
        #expect(run(stream, deflate: parameters) == [.text(sample), .text(sample), .text(sample)])
    }

    @Test func uncompressedMessageWithDeflateNegotiated() {
        #expect(run(text("plain"), deflate: PerMessageDeflateParameters()) == [.text(Array("plain".utf8))])
    }

    @Test(arguments: [
        PerMessageDeflateParameters(),
        PerMessageDeflateParameters(serverNoContextTakeover: true),
        PerMessageDeflateParameters(serverMaxWindowBits: 8),
        PerMessageDeflateParameters(serverNoContextTakeover: true, serverMaxWindowBits: 10),
    ])
    func sendRoundTrip(_ parameters: PerMessageDeflateParameters) {
        var connection = WebSocketConnection(deflate: parameters)
        let client = TestZlib(inflateBits: parameters.serverMaxWindowBits)
        var sizes: [Int] = []
        for _ in 0..<3 {
            let encoded = sample.withUnsafeBytes { connection.encodeMessage($0, opcode: .text) }
            let (first, payload) = parseServerFrame(encoded)
            #expect(first == 0xC1)  // FIN, RSV1, text
            sizes.append(payload.count)
            if parameters.serverNoContextTakeover { client.stream.pointee.total_in = 0; inflateReset(client.stream) }
            #expect(client.process(payload + [0, 0, 0xFF, 0xFF]) == sample)
        }
        if parameters.serverNoContextTakeover || parameters.serverMaxWindowBits == 8 {
            #expect(sizes[1] == sizes[0])
        } else {
            #expect(sizes[1] < sizes[0])  // the second message refers back into the first
        }
        // Tiny messages go uncompressed.
        let tiny = [UInt8]("hi".utf8).withUnsafeBytes { connection.encodeMessage($0, opcode: .text) }
        #expect(tiny == [0x81, 2, 0x68, 0x69])
    }

    @Test func bombFailsBeforeInflatingEverything() {
        // 4 MiB of zeros compresses to a few KiB; the limit is 64 KiB.
        let client = TestZlib(deflateBits: 15)
        let compressed = client.process([UInt8](repeating: 0, count: 4 << 20))
        #expect(compressed.count < 8192)
        let events = run(frame(2, compressed, rsv: 4), limits: WebSocketLimits(maxMessageBytes: 64 << 10), deflate: PerMessageDeflateParameters())
        #expect(events.count == 2)
        #expect(events.last == .failed(1009))
    }

    @Test func corruptCompressedData() {
        let events = run(frame(2, [0xFF, 0xFF, 0xFF, 0xFF], rsv: 4), deflate: PerMessageDeflateParameters())
        #expect(events.last == .failed(1002))
    }

    @Test func compressedInvalidUTF8() {
        let client = TestZlib(deflateBits: 15)
        let events = run(frame(1, client.process([0x61, 0xED, 0xA0, 0x80]), rsv: 4), deflate: PerMessageDeflateParameters())
        #expect(events.last == .failed(1007))
    }

    @Test func rsv1OnContinuationWithDeflate() {
        let client = TestZlib(deflateBits: 15)
        let compressed = client.process(sample)
        let events = run(frame(1, compressed, fin: false, rsv: 4) + frame(0, [], rsv: 4), deflate: PerMessageDeflateParameters())
        #expect(events.last == .failed(1002))
    }
}

/// Issue 17: without context takeover a stream holds nothing the next message needs, so the
/// codec told to (`releasesIdleStreams`, as the broker is) frees it after each message and gives
/// its charge back; with takeover the stream and its charge stay between messages.
@Suite("Codec: zlib streams freed between messages without context takeover")
struct DeflateStreamReleaseTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var parameters: PerMessageDeflateParameters
        var testDescription: String {
            "server_no_context_takeover \(parameters.serverNoContextTakeover), client_no_context_takeover \(parameters.clientNoContextTakeover)"
        }
    }

    static let rows = [
        Row(parameters: PerMessageDeflateParameters()),
        Row(parameters: PerMessageDeflateParameters(serverNoContextTakeover: true)),
        Row(parameters: PerMessageDeflateParameters(clientNoContextTakeover: true)),
        Row(parameters: PerMessageDeflateParameters(serverNoContextTakeover: true, clientNoContextTakeover: true)),
    ]

    @Test(arguments: rows)
    func streamsBetweenMessages(_ row: Row) {
        let p = row.parameters
        let budget = RecordingBudget(limit: 1 << 30)
        var connection = WebSocketConnection(deflate: p, budget: budget, releasesIdleStreams: true)
        let deflaterBytes = WebSocketConnection.deflaterBytes(windowBits: 15, memoryLevel: 8)
        let inflaterBytes = WebSocketConnection.inflaterBytes(windowBits: 15)
        // The peer's compressor keeps its window unless client_no_context_takeover was agreed.
        var peerDeflater = TestZlib(deflateBits: 15)
        let peerInflater = TestZlib(inflateBits: 15)
        for round in 0..<3 {
            // Receive: a message compressed by the peer, then our side holds the inflater only
            // if the peer may refer back into it.
            if p.clientNoContextTakeover { peerDeflater = TestZlib(deflateBits: 15) }
            let received = run(frame(2, peerDeflater.process(sample), rsv: 4), connection: &connection)
            #expect(received == [.binary(sample)], "round \(round)")
            #expect((connection.extras?.inflater == nil) == p.clientNoContextTakeover, "round \(round)")
            // Send: our compressor goes after the message unless our window is taken over.
            let encoded = sample.withUnsafeBytes { connection.encodeMessage($0, opcode: .binary) }
            let (first, payload) = parseServerFrame(encoded)
            #expect(first == 0xC2)
            if p.serverNoContextTakeover { inflateReset(peerInflater.stream) }
            #expect(peerInflater.process(payload + [0, 0, 0xFF, 0xFF]) == sample, "round \(round)")
            #expect((connection.extras?.deflater == nil) == p.serverNoContextTakeover, "round \(round)")
            let held = (p.serverNoContextTakeover ? 0 : deflaterBytes) + (p.clientNoContextTakeover ? 0 : inflaterBytes)
            #expect(budget.used == held, "round \(round)")
        }
        // Both streams were held at once unless each went after its own message (the peak also
        // holds the received message's storage, at most twice its size).
        let both = p.serverNoContextTakeover && p.clientNoContextTakeover
        let streams = both ? max(deflaterBytes, inflaterBytes) : deflaterBytes + inflaterBytes
        #expect((streams...streams + 2 * sample.count).contains(budget.highest), "peak \(budget.highest), streams \(streams)")
        connection.releaseResources()
        #expect(budget.used == 0)
    }

    @Test("without releasesIdleStreams (the client role's default) a no-takeover stream is reset and kept")
    func keptByDefault() {
        var connection = WebSocketConnection(deflate: PerMessageDeflateParameters(serverNoContextTakeover: true))
        for _ in 0..<2 {
            _ = sample.withUnsafeBytes { connection.encodeMessage($0, opcode: .text) }
            #expect(connection.extras?.deflater != nil)
        }
    }
}
