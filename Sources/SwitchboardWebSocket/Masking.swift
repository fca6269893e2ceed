/// XOR masking (RFC 6455 §5.3), eight bytes per step: the server role unmasks with it, the
/// client role masks what it sends, and the load generator does both. The operation is its own
/// inverse, so one function serves every direction.
@usableFromInline package enum Masking {
    /// Builds the mask as a number whose low byte is the first mask byte on the wire.
    @inlinable @inline(__always)
    package static func key(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) -> UInt32 {
        UInt32(b0) | UInt32(b1) << 8 | UInt32(b2) << 16 | UInt32(b3) << 24
    }

    /// Masks (or unmasks) `count` bytes from `source` into `destination` (which may be the same memory).
    /// `phase` is how many payload bytes of this frame came before, modulo 4; returns the next phase.
    @inlinable @inline(__always)
    package static func apply(
        key: UInt32, phase: Int, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> Int {
        // The same loops: the bits it gathers go unused here, and the optimizer drops them.
        applyGatheringBits(key: key, phase: phase, source: source, destination: destination, count: count).nextPhase
    }

    /// ``apply(key:phase:source:destination:count:)`` from phase 0 that also tells whether every
    /// byte it wrote is ASCII (below 0x80): the high bits of the words it writes are gathered
    /// on the way, so a text message's ASCII payload (the common one) needs no separate UTF-8
    /// pass over it (issue 16 item 3). `key` 0 copies. `destination` must not overlap `source`:
    /// a count of at least 8 ends with one word over the last 8 bytes, partly written already,
    /// read again from `source` (the same bytes again, not a loop over up to 7).
    @inlinable @inline(__always)
    package static func applyReportingASCII(
        key: UInt32, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> Bool {
        assert(destination + count <= source || source + count <= destination, "unmasking in place")
        let wide = UInt64(key) | UInt64(key) << 32
        var highBits: UInt64 = 0
        var index = 0
        while index &+ 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self)) ^ wide
            destination.storeBytes(of: word.littleEndian, toByteOffset: index, as: UInt64.self)
            highBits |= word
            index &+= 8
        }
        if index < count && count >= 8 {
            // The last 8 bytes as one word, the key rotated to their phase.
            let start = count &- 8
            let shift = UInt32(start & 3) &* 8
            let rotated = shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: start, as: UInt64.self))
                ^ (UInt64(rotated) | UInt64(rotated) << 32)
            destination.storeBytes(of: word.littleEndian, toByteOffset: start, as: UInt64.self)
            return (highBits | word) & 0x8080_8080_8080_8080 == 0
        }
        var keyBytes = key
        var lastHighBits: UInt8 = 0
        while index < count {
            let byte = source.load(fromByteOffset: index, as: UInt8.self) ^ UInt8(truncatingIfNeeded: keyBytes)
            destination.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
            lastHighBits |= byte
            keyBytes = (keyBytes >> 8) | (keyBytes << 24)
            index &+= 1
        }
        return highBits & 0x8080_8080_8080_8080 == 0 && lastHighBits & 0x80 == 0
    }

    /// ``apply(key:phase:source:destination:count:)`` that also gathers the bits of every byte
    /// it writes: the result's high bit is clear when all of them were ASCII. For a message
    /// assembled from pieces (`UnmaskedPayload`): the unmasked text's ASCII check comes with
    /// the one pass that writes it, so the UTF-8 validator is left for text that is not ASCII.
    /// `destination` may be `source` (in place) or apart from it, not partly over it. (`apply` is
    /// this, the bits left unused.) The word
    /// loop is written plainly so that the compiler vectorizes it (two 16-byte vectors a step on
    /// x86-64's SSE2 baseline; a hand-unrolled two-word version stayed scalar, 3.7 µs per 64 KiB).
    @inlinable @inline(__always)
    package static func applyGatheringBits(
        key: UInt32, phase: Int, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> (nextPhase: Int, bits: UInt8) {
        // Rotate so that the key's low byte lines up with the first byte we process.
        let shift = UInt32(phase & 3) &* 8
        let rotated = shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
        let wide = UInt64(rotated) | UInt64(rotated) << 32
        var gathered: UInt64 = 0
        var index = 0
        while index &+ 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self)) ^ wide
            destination.storeBytes(of: word.littleEndian, toByteOffset: index, as: UInt64.self)
            gathered |= word
            index &+= 8
        }
        var keyBytes = rotated
        var last: UInt8 = 0
        while index < count {
            let byte = source.load(fromByteOffset: index, as: UInt8.self) ^ UInt8(truncatingIfNeeded: keyBytes)
            destination.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
            last |= byte
            keyBytes = (keyBytes >> 8) | (keyBytes << 24)
            index &+= 1
        }
        // Fold the eight lanes into one byte.
        var folded = gathered | gathered >> 32
        folded |= folded >> 16
        folded |= folded >> 8
        return ((phase &+ count) & 3, UInt8(truncatingIfNeeded: folded) | last)
    }
}
