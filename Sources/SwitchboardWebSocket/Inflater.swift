import CZlib

/// A raw-inflate stream (RFC 7692 receive side).
///
/// A class because zlib keeps a pointer back to its `z_stream` and checks it on every call, so the
/// stream must live at a fixed address for its whole life and be released exactly once.
final class Inflater {
    /// How an inflate call ended.
    enum Outcome {
        case ok
        /// The output would exceed the caller's limit (a decompression bomb or simply too big).
        case tooBig
        /// zlib rejected the data.
        case corrupt
        /// The validator passed to ``inflateMasked`` rejected the output.
        case invalidText
        /// The message buffer's budget refused to grow (counted as it grows, 32 KiB at a time).
        case overBudget
    }

    private let stream: UnsafeMutablePointer<z_stream>
    /// Fixed output window; every chunk is appended to the message, so memory stays bounded by the limit.
    private let output: UnsafeMutableRawPointer
    private static let outputSize = 32 * 1024
    /// Unmasked input on its way in: the receive buffer is read-only, so masked bytes land here first.
    private let input: UnsafeMutableRawPointer
    private static let inputSize = 16 * 1024
    /// The input and output scratch one stream holds.
    static let scratchBytes = outputSize + inputSize

    init?(windowBits: Int) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // Negative window bits select raw deflate (no zlib header), which is what RFC 7692 carries.
        guard sb_inflate_init(stream, Int32(-windowBits)) == Z_OK else {
            stream.deallocate()
            return nil
        }
        output = .allocate(byteCount: Self.outputSize, alignment: 16)
        input = .allocate(byteCount: Self.inputSize, alignment: 16)
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        output.deallocate()
        input.deallocate()
    }

    /// Starts a fresh LZ77 window (client_no_context_takeover, or after a final deflate block).
    func reset() {
        inflateReset(stream)
    }

    /// Unmasks `count` bytes at `source` (see ``Masking``) chunk by chunk and inflates them.
    /// `textValidator`, when given, checks each chunk's output as soon as it is appended.
    /// Returns the outcome and the new mask phase.
    func inflateMasked(
        _ source: UnsafeRawPointer, count: Int, key: UInt32, phase: Int,
        into message: inout AssemblyBuffer, limit: Int, textValidator: inout UTF8Validator?
    ) -> (Outcome, Int) {
        var phase = phase
        var done = 0
        while done < count {
            let step = min(count - done, Self.inputSize)
            phase = Masking.apply(key: key, phase: phase, source: source + done, destination: input, count: step)
            let start = message.count
            let outcome = inflate(UnsafeRawPointer(input), count: step, into: &message, limit: limit)
            if outcome != .ok { return (outcome, phase) }
            if textValidator != nil {
                let valid = message.withUnsafeBytes { textValidator!.validate($0.baseAddress! + start, count: $0.count - start) }
                if !valid { return (.invalidText, phase) }
            }
            done += step
        }
        return (.ok, phase)
    }

    /// Inflates `count` bytes at `input`, appending the output to `message` while it stays within `limit`.
    /// Output is produced in 32 KiB steps and the limit is checked after each, so a bomb costs at
    /// most `limit` + 32 KiB of memory and the work to produce it.
    func inflate(_ input: UnsafeRawPointer, count: Int, into message: inout AssemblyBuffer, limit: Int) -> Outcome {
        var input = input
        var pending = count
        // avail_in is 32-bit; feed at most 1 GiB per round so huge limits cannot truncate it.
        repeat {
            let step = min(pending, 1 << 30)
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(step)
            while true {
                stream.pointee.next_out = output.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(Self.outputSize)
                let status = CZlib.inflate(stream, Z_SYNC_FLUSH)
                let produced = Self.outputSize - Int(stream.pointee.avail_out)
                if produced > 0 {
                    if produced > limit - message.count { return .tooBig }
                    if !message.append(UnsafeRawBufferPointer(start: output, count: produced), ceiling: limit) { return .overBudget }
                }
                switch status {
                case Z_OK:
                    if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 { break }
                    continue
                case Z_BUF_ERROR:
                    // No progress possible: input used up (normal at a frame boundary).
                    if stream.pointee.avail_in == 0 { break }
                    if produced == Self.outputSize { continue }
                    return .corrupt
                case Z_STREAM_END:
                    // The client ended the deflate stream (BFINAL); the next bytes, if any, start a new one.
                    inflateReset(stream)
                    if stream.pointee.avail_in == 0 { break }
                    continue
                default:
                    return .corrupt
                }
                break
            }
            input += step
            pending -= step
        } while pending > 0
        return .ok
    }
}
