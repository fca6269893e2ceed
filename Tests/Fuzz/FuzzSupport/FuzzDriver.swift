// What every libFuzzer target shares: how its main hands control to libFuzzer's driver.
//
// SwiftPM links an executable with its main renamed to `<Target>_main` (so tests can link the
// module), which hides it from the `main` that `-sanitize=fuzzer` brings. Each target therefore
// exports its own `@_cdecl("<Target>_main")` (the name is the target's, so it cannot live here)
// and calls `runFuzzDriver` from it with its `LLVMFuzzerTestOneInput` function.

/// libFuzzer's entry for a program that owns main (compiler-rt's FuzzerInterface.h).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// Runs libFuzzer's driver (flags, corpus, crash artifacts) on `testOneInput` with the
/// program's arguments, and returns its exit status.
public func runFuzzDriver(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt {
    // The driver may rewrite argc/argv (it parses its own flags out), so it takes them by pointer.
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector, testOneInput)
}
