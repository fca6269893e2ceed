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
        .library(name: "SwitchboardProtocols", targets: ["SwitchboardProtocols"]),
        .library(name: "SwitchboardClient", targets: ["SwitchboardClient"]),
        .executable(name: "switchboard", targets: ["switchboard"]),
        .executable(name: "switchboard-echo", targets: ["switchboard-echo"]),
        .executable(name: "switchboard-chat", targets: ["switchboard-chat"]),
        .executable(name: "switchboard-bench", targets: ["switchboard-bench"]),
        .executable(name: "cb-bench", targets: ["cb-bench"]),
        .executable(name: "switchboard-rpc-example", targets: ["switchboard-rpc-example"]),
        .executable(name: "rpc-bench", targets: ["rpc-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        // The Swift server ecosystem at the host boundary: logging, metrics, lifecycle, CLI.
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(
            name: "CLiburing",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("crypto"), .linkedLibrary("ssl")]
        ),
        .target(
            name: "SwitchboardIO",
            dependencies: [
                "CLiburing",
                "COpenSSL",  // TLS on the shards (memory BIOs): Shard+TLS.swift
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["TLS_BAD_RECORDS.md"]
        ),
        .target(
            name: "CZlib",
            linkerSettings: [.linkedLibrary("z")]
        ),
        .target(name: "SwitchboardHTTP", exclude: ["BAD_INPUTS.md"]),
        // RESP3 codec (Redis protocol): pure parsing/writing like SwitchboardHTTP, depends on nothing.
        .target(name: "SwitchboardRESP", exclude: ["BAD_INPUTS.md"]),
        // Cluster engine (issue 13): channels across nodes over Redis, per-shard connections.
        .target(
            name: "SwitchboardCluster",
            dependencies: [
                "SwitchboardIO", "SwitchboardRESP",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SwitchboardWebSocket",
            dependencies: ["SwitchboardHTTP", "COpenSSL", "CZlib"]
        ),
        .target(
            name: "Switchboard",
            dependencies: [
                "SwitchboardIO", "SwitchboardHTTP", "SwitchboardWebSocket", "COpenSSL",
                "SwitchboardCluster",  // issue 13: the cluster engine behind channels
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),  // SIGHUP: TLS reload
            ]
        ),
        .target(
            name: "SwitchboardProtocols",
            dependencies: ["Switchboard", "SwitchboardJSON", "SwitchboardJWT", "SwitchboardWebSocket",
                           "SwitchboardRESP", "SwitchboardCluster"]  // issue 13: Redis replies of the cluster-wide roles; protocol channels
        ),
        // Broadcaster protocol support (issue 11): the strict JSON reader/writer (no dependencies)
        // and JWT verification on libcrypto.
        .target(name: "SwitchboardJSON"),
        .target(name: "SwitchboardJWT", dependencies: ["SwitchboardJSON", "COpenSSL"], exclude: ["BAD_TOKENS.md"]),
        .target(
            name: "SwitchboardClient",
            dependencies: ["COpenSSL", "CLiburing", "SwitchboardWebSocket", "SwitchboardJSON", .product(name: "DequeModule", package: "swift-collections")]
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "Switchboard", "SwitchboardProtocols", "SwitchboardCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What the executables share: layered configuration (defaults < file < environment <
        // flags) and the common server options, on swift-argument-parser.
        .target(
            name: "SwitchboardCommandLine",
            dependencies: [
                "Switchboard", "SwitchboardProtocols",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "SwitchboardTestSupport", dependencies: ["Switchboard"], path: "Tests/SwitchboardTestSupport"),  // Switchboard: the cluster nodes fixture
        .executableTarget(
            name: "switchboard-chat",
            dependencies: ["Switchboard", "SwitchboardCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            // The browser page, compiled into the binary (PackageResources.index_html...).
            resources: [.embedInCode("Web/index.html"), .embedInCode("Web/chat.css"), .embedInCode("Web/chat.js")]
        ),
        .executableTarget(
            name: "switchboard-echo",
            dependencies: ["Switchboard", "SwitchboardCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The load generator lives under Benchmarks/ but builds with the main package, so CI
        // tests it without building the hummingbird peer (Benchmarks/Package.swift).
        .target(
            name: "SwitchboardBenchCore",
            dependencies: [
                "SwitchboardIO", "COpenSSL", "SwitchboardWebSocket", .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "SwitchboardJSON",  // the protocol templates read every reply (issue 16 item 8)
            ],
            path: "Benchmarks/Sources/SwitchboardBenchCore"
        ),
        .executableTarget(
            name: "switchboard-bench",
            dependencies: ["SwitchboardBenchCore"],
            path: "Benchmarks/Sources/switchboard-bench"
        ),
        // switchboard-echo's echo and fan-out with a synchronous main, for valgrind (issue 16).
        .executableTarget(
            name: "valgrind-echo",
            dependencies: ["Switchboard", "SwitchboardIO", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/Sources/valgrind-echo"
        ),
        .executableTarget(
            name: "cb-bench",
            dependencies: [
                "SwitchboardClient", .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/Sources/cb-bench"
        ),
        .testTarget(name: "SwitchboardChatTests", dependencies: ["switchboard-chat", "Switchboard", "SwitchboardTestSupport"]),
        .testTarget(name: "SwitchboardBenchTests", dependencies: ["SwitchboardBenchCore", "SwitchboardTestSupport", "SwitchboardWebSocket",
                                                         "Switchboard", "SwitchboardProtocols", "SwitchboardJWT", "CJWTTestSupport"]),
        // The generated docs' check (BAD_INPUTS.md and the like), free of the server: see DocMirror.swift.
        .target(name: "SwitchboardDocMirror", path: "Tests/SwitchboardDocMirror"),
        .testTarget(name: "SwitchboardIOTests", dependencies: ["SwitchboardIO", "SwitchboardTestSupport", "SwitchboardDocMirror",
                                                        "switchboard-malloc-probe"]),
        // malloc_trim_threshold_bytes measured in a fresh process (MallocTrimTests).
        .executableTarget(name: "switchboard-malloc-probe", dependencies: ["SwitchboardIO"], path: "Tests/switchboard-malloc-probe"),
        .testTarget(name: "SwitchboardHTTPTests", dependencies: ["SwitchboardHTTP", "SwitchboardDocMirror"]),
        .testTarget(name: "SwitchboardRESPTests", dependencies: ["SwitchboardRESP", "SwitchboardTestSupport", "SwitchboardDocMirror"]),
        .testTarget(name: "SwitchboardClusterTests", dependencies: ["SwitchboardCluster", "Switchboard", "SwitchboardIO", "SwitchboardRESP", "SwitchboardTestSupport",
                                                             "SwitchboardProtocols",  // cl13proto: protocols across nodes
                                                             "CJWTTestSupport"]),  // cl13proc: broadcaster tokens (HS256) for the process tests
        // cl13proc: the broker API and RPC over WebSockets, for the process-level cluster tests.
        .executableTarget(name: "switchboard-cluster-testnode", dependencies: ["Switchboard", "SwitchboardProtocols", "SwitchboardCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log")],
                          path: "Tests/switchboard-cluster-testnode"),
        .testTarget(name: "SwitchboardJSONTests", dependencies: ["SwitchboardJSON"]),
        .testTarget(
            name: "BroadcasterTests",
            dependencies: ["SwitchboardProtocols", "SwitchboardJSON", "SwitchboardJWT", "CJWTTestSupport", "Switchboard", "SwitchboardTestSupport"]
        ),
        .target(name: "CJWTTestSupport", path: "Tests/CJWTTestSupport", linkerSettings: [.linkedLibrary("crypto")]),
        .testTarget(name: "SwitchboardJWTTests", dependencies: ["SwitchboardJWT", "SwitchboardJSON", "CJWTTestSupport", "SwitchboardDocMirror"]),
        .testTarget(name: "SwitchboardProtocolsTests", dependencies: ["SwitchboardProtocols", "Switchboard", "SwitchboardTestSupport"]),
        .testTarget(name: "SwitchboardClientTests", dependencies: ["SwitchboardClient", "SwitchboardTestSupport", "Switchboard", "SwitchboardProtocols", "SwitchboardWebSocket", "SwitchboardJWT", "CJWTTestSupport"]),
        .testTarget(name: "SwitchboardWebSocketTests", dependencies: ["SwitchboardWebSocket", "SwitchboardHTTP"]),
        .testTarget(name: "SwitchboardTests", dependencies: ["Switchboard", "SwitchboardIO", "SwitchboardHTTP", "SwitchboardTestSupport"]),
        .testTarget(
            name: "SwitchboardEcosystemTests",
            dependencies: [
                "Switchboard", "SwitchboardProtocols", "SwitchboardCommandLine", "SwitchboardTestSupport", "SwitchboardIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // RPC (amqp-swarm protocol, issue 12): codec + server in SwitchboardProtocols/RPC.
        .executableTarget(name: "switchboard-rpc-example", dependencies: ["Switchboard", "SwitchboardProtocols", "SwitchboardCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "rpc-bench",
            dependencies: ["Switchboard", "SwitchboardProtocols", "SwitchboardClient", .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Benchmarks/Sources/rpc-bench"
        ),
        // The SDK's WebSocket client against Autobahn's fuzzing server (deploy/autobahn-client.sh).
        .executableTarget(name: "sdk-autobahn-client", dependencies: ["SwitchboardClient"], path: "Tests/interop/autobahn_client"),
        .testTarget(name: "SwitchboardRPCTests", dependencies: ["SwitchboardProtocols", "Switchboard", "SwitchboardClient", "SwitchboardRESP", "SwitchboardTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// Fuzz targets (libFuzzer), only when asked: `SWITCHBOARD_FUZZ=1 swift build -c release
// --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// --product FuzzHTTP` (see deploy/fuzz.sh). Their entry points are @_cdecl functions; libFuzzer
// provides main, so they cannot build as ordinary executables.
if Context.environment["SWITCHBOARD_FUZZ"] == "1" {
    package.products += [
        .executable(name: "FuzzHTTP", targets: ["FuzzHTTP"]),
        .executable(name: "FuzzRESP", targets: ["FuzzRESP"]),
        .executable(name: "FuzzWebSocket", targets: ["FuzzWebSocket"]),
        .executable(name: "FuzzJSON", targets: ["FuzzJSON"]),
        .executable(name: "FuzzTLSRecords", targets: ["FuzzTLSRecords"]),
    ]
    package.targets += [
        // What the targets share: running libFuzzer's driver from their renamed main.
        .target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"),
        .executableTarget(name: "FuzzHTTP", dependencies: ["FuzzSupport", "SwitchboardHTTP"], path: "Tests/Fuzz/FuzzHTTP"),
        .executableTarget(name: "FuzzRESP", dependencies: ["FuzzSupport", "SwitchboardRESP"], path: "Tests/Fuzz/FuzzRESP"),
        .executableTarget(name: "FuzzWebSocket", dependencies: ["FuzzSupport", "SwitchboardWebSocket"], path: "Tests/Fuzz/FuzzWebSocket"),
        .executableTarget(name: "FuzzJSON", dependencies: ["FuzzSupport", "SwitchboardJSON"], path: "Tests/Fuzz/FuzzJSON"),
        .executableTarget(name: "FuzzTLSRecords", dependencies: ["FuzzSupport", "COpenSSL"], path: "Tests/Fuzz/FuzzTLSRecords"),
    ]
}
