import Testing
import SwitchboardWebSocket

private let valid: [[UInt8]] = [
    [], Array("plain ascii text, long enough for the fast path".utf8),
    [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],
    [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], Array("κόσμε".utf8), Array("日本語 🎉 mixed".utf8),
    Array("12345678".utf8) + [0xE2, 0x82, 0xAC] + Array("abcdefgh".utf8),
]

private let invalid: [[UInt8]] = [
    [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],
    [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
    [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0xC2, 0x41], [0xE2, 0x82, 0x41],
    Array("abcdefgh".utf8) + [0xF8, 0x88, 0x80, 0x80, 0x80], Array("κόσμε".utf8) + [0xED, 0xA0, 0x80] + Array("edited".utf8),
]

private let truncated: [[UInt8]] = [[0xC2], [0xE2, 0x82], [0xF0, 0x9F, 0x98], Array("abc".utf8) + [0xF4, 0x8F]]

private func check(_ bytes: [UInt8], split: Int) -> (Bool, Bool) {
    var validator = UTF8Validator()
    let first = bytes[..<split].withUnsafeBytes { validator.validate($0) }
    let second = bytes[split...].withUnsafeBytes { validator.validate($0) }
    return (first && second, validator.isComplete)
}

@Suite struct UTF8ValidatorTests {
    @Test(arguments: valid)
    func acceptsValid(_ bytes: [UInt8]) {
        for split in 0...bytes.count {
            let (ok, complete) = check(bytes, split: split)
            #expect(ok && complete, "split \(split)")
        }
    }

    @Test(arguments: invalid)
    func rejectsInvalid(_ bytes: [UInt8]) {
        for split in 0...bytes.count {
            #expect(!check(bytes, split: split).0, "split \(split)")
        }
    }

    @Test(arguments: truncated)
    func truncatedIsIncomplete(_ bytes: [UInt8]) {
        for split in 0...bytes.count {
            let (ok, complete) = check(bytes, split: split)
            #expect(ok && !complete, "split \(split)")
        }
    }

    @Test func agreesWithStandardLibraryOnAllTwoAndThreeByteLeads() {
        // Every lead byte followed by every second byte and a fixed continuation.
        for lead in 0x80...0xFF {
            for second in 0...0xFF {
                let bytes: [UInt8] = [UInt8(lead), UInt8(second), 0x80, 0x80]
                var validator = UTF8Validator()
                let ours = bytes.withUnsafeBytes { validator.validate($0) } && validator.isComplete
                let reference = String(validating: bytes, as: UTF8.self) != nil
                #expect(ours == reference, "\(bytes)")
            }
        }
    }

    @Test func resetClearsFailure() {
        var validator = UTF8Validator()
        #expect(![UInt8(0xFF)].withUnsafeBytes { validator.validate($0) })
        #expect(![UInt8(0x41)].withUnsafeBytes { validator.validate($0) })
        validator.reset()
        #expect([UInt8(0x41)].withUnsafeBytes { validator.validate($0) })
    }
}
