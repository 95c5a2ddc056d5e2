// swift-tools-version:6.0
import Foundation
import PackageDescription

// Swift's default x86-64 target has no AVX or FMA: SIMD kernels run 20-40x slower without a
// target CPU (docs/architecture.md, "Build"). MESHLM_TARGET_CPU picks another one (e.g. "znver4",
// "skylake-avx512", "haswell") when the build machine differs from the nodes that run the job.
let targetCPU = ProcessInfo.processInfo.environment["MESHLM_TARGET_CPU"] ?? "native"
let nativeSwift: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU]),
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
]
let nativeC: [CSetting] = [.unsafeFlags(["-march=\(targetCPU)", "-O3"])]
// MeshLM's own modules are optimized in debug builds too (the test targets are not): the tests
// run the debug binaries under mpirun, and unoptimized kernels made the tests ~6x slower
// (docs/architecture.md, "Build").
let sourceSwift: [SwiftSetting] = nativeSwift + [.unsafeFlags(["-O"], .when(configuration: .debug))]
// MESHLM_FUZZ=1 adds the libFuzzer driver `meshlm-fuzz` (Fuzz/Driver); tools/fuzz.sh builds it in
// its own scratch path with address sanitizer and coverage, so the normal build never sees it
// (docs/fuzzing.md).
let fuzzing = ProcessInfo.processInfo.environment["MESHLM_FUZZ"] == "1"
let fuzzerRuntime = ProcessInfo.processInfo.environment["MESHLM_FUZZER_LIB"] ?? ""

let package = Package(
    name: "MeshLM",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "meshlm", targets: ["meshlm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // C modules: system libraries found by pkg-config, with a shim header for the macros Swift
        // cannot import.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "CSupport", cSettings: nativeC),

        // Layers, each pointing only down (docs/architecture.md).
        .target(name: "Runtime",
                dependencies: ["CMPI", "CHDF5", "CZstd", "CSupport",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: sourceSwift),
        .target(name: "Tensors", dependencies: ["CBLAS", "CSupport"],
                swiftSettings: sourceSwift),
        .target(name: "Model", dependencies: ["Runtime", "Tensors"], swiftSettings: sourceSwift),
        .target(name: "Parallel", dependencies: ["Runtime", "Tensors", "Model"],
                swiftSettings: sourceSwift),
        .target(name: "DataPipeline", dependencies: ["Runtime"], swiftSettings: sourceSwift),
        .target(name: "Checkpoint", dependencies: ["Runtime", "CSupport"], swiftSettings: sourceSwift),
        .target(name: "Serving", dependencies: ["Runtime", "Tensors", "Model", "Parallel", "Checkpoint", "DataPipeline", "CBLAS", "CSupport"],
                swiftSettings: sourceSwift),
        // The OpenAI-compatible HTTP front of the engine; apart so the engine stays free of NIO.
        .target(name: "ServingHTTP", dependencies: ["Serving", "DataPipeline", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdCore", package: "hummingbird")],
                swiftSettings: sourceSwift),
        .target(name: "Training", dependencies: ["Runtime", "Tensors", "Model", "Parallel", "DataPipeline", "Checkpoint"],
                swiftSettings: sourceSwift),
        .executableTarget(
            name: "meshlm",
            dependencies: ["Runtime", "Tensors", "Model", "Parallel", "DataPipeline", "Training", "Serving", "ServingHTTP", "Checkpoint",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: sourceSwift),

        // Multi-rank checks that Tests/MeshLMTests launches under mpirun.
        .executableTarget(name: "mpi-checks", dependencies: ["Runtime", "Checkpoint", "Tensors", "Model", "Parallel", "Training", "DataPipeline"],
                          path: "Tests/MPIChecks",
                          swiftSettings: sourceSwift),
        // One way for every test to compare tensors (counts and largest difference, never an
        // element-by-element diff of two arrays).
        .target(name: "TensorComparison", path: "Tests/TensorComparison"),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime"], swiftSettings: nativeSwift),
        .testTarget(name: "CheckpointTests", dependencies: ["TensorComparison", "Checkpoint", "Runtime", "Training", "Model"], swiftSettings: nativeSwift),
        .testTarget(name: "TensorsTests", dependencies: ["TensorComparison", "Tensors"], swiftSettings: nativeSwift),
        .testTarget(name: "ModelTests", dependencies: ["TensorComparison", "Model", "Tensors", "Runtime"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeSwift),
        .testTarget(name: "DataPipelineTests", dependencies: ["DataPipeline", "Runtime"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeSwift),
        .testTarget(name: "TrainingTests", dependencies: ["TensorComparison", "Training", "Model", "Parallel", "DataPipeline", "Tensors", "Runtime"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeSwift),
        .testTarget(name: "ServingTests", dependencies: ["TensorComparison", "Serving", "Model", "Tensors", "Runtime", "Checkpoint", "DataPipeline", "Training"],
                    swiftSettings: nativeSwift),
        // The parsers that read user bytes, one entry each, for the fuzzer and its regression inputs.
        .target(name: "FuzzHarnesses", dependencies: ["Runtime", "DataPipeline", "Checkpoint", "Serving", "ServingHTTP", "Training"],
                path: "Fuzz/Harnesses", swiftSettings: sourceSwift),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzHarnesses"], exclude: ["Inputs"],
                    swiftSettings: nativeSwift),
        .testTarget(name: "MeshLMTests", dependencies: ["TensorComparison", "Runtime", "Model", "Parallel", "Serving", "Checkpoint"],
                    swiftSettings: nativeSwift),
    ] + (fuzzing ? [
        .executableTarget(name: "meshlm-fuzz", dependencies: ["FuzzHarnesses"], path: "Fuzz/Driver",
                          swiftSettings: sourceSwift,
                          linkerSettings: [.unsafeFlags(["-Xlinker", fuzzerRuntime, "-lstdc++"])]),
    ] : [])
)
