// swift-tools-version: 6.1
import PackageDescription

// Layering (never bypassed): C shims -> SwitchboardIO -> SwitchboardHTTP -> Switchboard -> executable.
// SwitchboardHTTP is pure parsing/formatting and depends on nothing; SwitchboardIO knows nothing of HTTP.
let package = Package(
    name: "Switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Switchboard", targets: ["Switchboard"]),
        .library(name: "SwitchboardIO", targets: ["SwitchboardIO"]),
        .library(name: "SwitchboardHTTP", targets: ["SwitchboardHTTP"]),
        .executable(name: "switchboard", targets: ["switchboard"]),
        .executable(name: "switchboard-bench", targets: ["switchboard-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
    ],
    targets: [
        .target(
            name: "CLiburing",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("crypto")]
        ),
        .target(
            name: "SwitchboardIO",
            dependencies: [
                "CLiburing",
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .target(
            name: "CZlib",
            linkerSettings: [.linkedLibrary("z")]
        ),
        .target(name: "SwitchboardHTTP", exclude: ["BAD_INPUTS.md"]),
        .target(
            name: "SwitchboardWebSocket",
            dependencies: ["SwitchboardHTTP", "COpenSSL", "CZlib"]
        ),
        .target(
            name: "Switchboard",
            dependencies: ["SwitchboardIO", "SwitchboardHTTP", "SwitchboardWebSocket", "COpenSSL"]
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: ["Switchboard"]
        ),
        .target(name: "SwitchboardTestSupport", path: "Tests/SwitchboardTestSupport"),
        // The load generator lives under Benchmarks/ but builds with the main package, so CI
        // tests it without building the hummingbird peer (Benchmarks/Package.swift).
        .target(
            name: "SwitchboardBenchCore",
            dependencies: ["SwitchboardIO", "COpenSSL", .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Benchmarks/Sources/SwitchboardBenchCore"
        ),
        .executableTarget(
            name: "switchboard-bench",
            dependencies: ["SwitchboardBenchCore"],
            path: "Benchmarks/Sources/switchboard-bench"
        ),
        .testTarget(name: "SwitchboardBenchTests", dependencies: ["SwitchboardBenchCore", "SwitchboardTestSupport"]),
        .testTarget(name: "SwitchboardIOTests", dependencies: ["SwitchboardIO", "SwitchboardTestSupport"]),
        .testTarget(name: "SwitchboardHTTPTests", dependencies: ["SwitchboardHTTP"]),
        .testTarget(name: "SwitchboardWebSocketTests", dependencies: ["SwitchboardWebSocket", "SwitchboardHTTP"]),
        .testTarget(name: "SwitchboardTests", dependencies: ["Switchboard", "SwitchboardIO", "SwitchboardHTTP", "SwitchboardTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
