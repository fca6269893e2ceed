import CZlib

/// A raw-deflate stream (RFC 7692 send side). A class for the same reason as ``Inflater``:
/// zlib needs the `z_stream` at a fixed address.
final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>
    /// Reused output buffer; grows for a large message and shrinks back after it (``trimOutput()``).
    private(set) var output: UnsafeMutableRawPointer
    private var capacity: Int

    /// zlib level 1: for a broker the CPU per message matters more than the last few percent of ratio.
    static let level: Int32 = 1

    /// The output buffer kept between messages; a larger one is given back after its message.
    static let keptOutputBytes = 4096

    /// `memoryLevel` is zlib's memLevel (1...9): the hash table and pending buffer take
    /// 2^(memoryLevel + 9) bytes together, the window 2^(windowBits + 1).
    init?(windowBits: Int, memoryLevel: Int = 8) {
        precondition((1...9).contains(memoryLevel))
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // zlib refuses raw deflate with an 8-bit window; 9 bits with Huffman-only coding never emits a
        // back-reference, so the output is valid for a peer that only keeps 256 bytes of window.
        let bits = max(windowBits, 9)
        guard sb_deflate_init(stream, Self.level, Int32(-bits), Int32(memoryLevel)) == Z_OK else {
            stream.deallocate()
            return nil
        }
        if windowBits < 9 {
            deflateParams(stream, Self.level, Z_HUFFMAN_ONLY)
        }
        capacity = Self.keptOutputBytes
        output = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
        output.deallocate()
    }

    /// Starts a fresh LZ77 window (server_no_context_takeover).
    func reset() {
        deflateReset(stream)
    }

    /// Compresses one message with a sync flush and returns the byte count in ``output``, without
    /// the trailing 00 00 FF FF (RFC 7692 §7.2.1).
    func compress(_ payload: UnsafeRawBufferPointer) -> Int {
        // deflateBound ignores the sync-flush marker and block headers of a split input: add slack.
        let bound = Int(deflateBound(stream, uLong(payload.count))) + 64
        if bound > capacity { grow(to: bound) }
        var used = 0
        var input = payload.baseAddress ?? UnsafeRawPointer(output)
        var pending = payload.count
        repeat {
            let step = min(pending, 1 << 30)
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(step)
            let flush = step == pending ? Z_SYNC_FLUSH : Z_NO_FLUSH
            while true {
                if capacity - used < 64 { grow(to: capacity * 2) }
                stream.pointee.next_out = (output + used).assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(capacity - used)
                _ = CZlib.deflate(stream, flush)
                used = capacity - Int(stream.pointee.avail_out)
                // Done with this step once all input is taken and zlib had room left over.
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 { break }
            }
            input += step
            pending -= step
        } while pending > 0
        if used >= 4 && output.loadUnaligned(fromByteOffset: used - 4, as: UInt32.self) == UInt32(bigEndian: 0x0000_FFFF) {
            used -= 4
        }
        return used
    }

    /// Gives back an output buffer a large message grew (once its bytes were copied out), so
    /// an idle connection holds ``keptOutputBytes``, not its largest message ever.
    func trimOutput() {
        guard capacity > Self.keptOutputBytes * 16 else { return }
        output.deallocate()
        capacity = Self.keptOutputBytes
        output = .allocate(byteCount: capacity, alignment: 16)
    }

    private func grow(to size: Int) {
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        bigger.copyMemory(from: output, byteCount: capacity)
        output.deallocate()
        output = bigger
        capacity = size
    }
}
