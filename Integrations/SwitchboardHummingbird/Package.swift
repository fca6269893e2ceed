// swift-tools-version: 6.1
import PackageDescription

// Switchboard inside a Hummingbird application. A separate package on purpose (like
// Benchmarks/): the core package and its CI never resolve or build Hummingbird.
let package = Package(
    name: "SwitchboardHummingbird",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SwitchboardHummingbird", targets: ["SwitchboardHummingbird"]),
        .executable(name: "hummingbird-chat-example", targets: ["hummingbird-chat-example"]),
        .executable(name: "hummingbird-router-bench", targets: ["hummingbird-router-bench"]),
    ],
    dependencies: [
        .package(name: "Switchboard", path: "../.."),
        // traits: [] drops Hummingbird's default swift-configuration / full-Foundation traits (not needed here).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .target(
            name: "SwitchboardHummingbird",
            dependencies: [
                .product(name: "Switchboard", package: "Switchboard"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "hummingbird-chat-example",
            dependencies: [
                "SwitchboardHummingbird",
                .product(name: "Switchboard", package: "Switchboard"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Benchmarks/scripts/hummingbird-router-bench.sh: one router on either server.
        .executableTarget(
            name: "hummingbird-router-bench",
            dependencies: [
                "SwitchboardHummingbird",
                .product(name: "Switchboard", package: "Switchboard"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The core's test client (real sockets), shared through a symbolic link.
        .target(name: "HBTestSupport", path: "Tests/HBTestSupport"),
        .testTarget(
            name: "SwitchboardHummingbirdTests",
            dependencies: [
                "SwitchboardHummingbird", "hummingbird-chat-example", "HBTestSupport",
                .product(name: "Switchboard", package: "Switchboard"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
