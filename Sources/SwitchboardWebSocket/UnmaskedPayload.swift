/// A frame's payload as it arrives, unmasked: a sequence meant for `Array.append(contentsOf:)`,
/// which hands a sequence the array's spare capacity (`_copyContents(initializing:)`), so the
/// bytes are unmasked straight into the message being assembled (``AssemblyBuffer``). One pass
/// over the bytes where a copy, an unmask in place and the UTF-8 validator's pass were three
/// (issue 16: echo of 64 KiB messages, which no read holds whole).
///
/// The pass also gathers the bits of every byte written (`bits`, through a pointer the caller
/// owns for the append's duration): clear high bit, all ASCII, and a text message's validator
/// at a character boundary stays there without looking at them.
///
/// The iterator (any other use of the sequence) yields the same bytes one at a time.
struct UnmaskedPayload: Sequence {
    let source: UnsafeRawPointer
    let count: Int
    let key: UInt32
    /// Position in the mask of the first byte (0...3).
    let phase: Int
    /// Where the gathered bits are ORed in; also where the next phase is reported.
    let result: UnsafeMutablePointer<(nextPhase: Int, bits: UInt8)>

    struct Iterator: IteratorProtocol {
        let payload: UnmaskedPayload
        var index: Int

        mutating func next() -> UInt8? {
            guard index < payload.count else { return nil }
            let shift = UInt32((payload.phase &+ index) & 3) &* 8
            let byte = payload.source.load(fromByteOffset: index, as: UInt8.self) ^ UInt8(truncatingIfNeeded: payload.key >> shift)
            index &+= 1
            payload.result.pointee.bits |= byte
            payload.result.pointee.nextPhase = (payload.phase &+ index) & 3
            return byte
        }
    }

    var underestimatedCount: Int { count }

    func makeIterator() -> Iterator { Iterator(payload: self, index: 0) }

    /// The append's fast path: unmasks as many bytes as fit `buffer` (all of them after the
    /// assembly buffer's `reserve`) in one pass.
    func _copyContents(initializing buffer: UnsafeMutableBufferPointer<UInt8>) -> (Iterator, Int) {
        let written = Swift.min(count, buffer.count)
        guard written > 0, let destination = buffer.baseAddress else { return (makeIterator(), 0) }
        let (nextPhase, bits) = Masking.applyGatheringBits(
            key: key, phase: phase, source: source, destination: UnsafeMutableRawPointer(destination), count: written)
        result.pointee.bits |= bits
        result.pointee.nextPhase = nextPhase
        return (Iterator(payload: self, index: written), written)
    }
}
