import CSupport

/// What the CPU offers and what this binary was built to use.
public struct CPUInfo: Sendable {
    public struct Features: Sendable, Equatable {
        public var avx2: Bool
        public var fma: Bool
        public var avx512: Bool

        init(_ raw: meshlm_cpu_features) {
            avx2 = raw.avx2 != 0
            fma = raw.fma != 0
            avx512 = raw.avx512f != 0 && raw.avx512bw != 0 && raw.avx512vl != 0
        }

        /// Widest fp32 vector: 16 lanes with AVX-512, 8 with AVX2, 4 otherwise.
        public var vectorLanes: Int { avx512 ? 16 : (avx2 ? 8 : 4) }
        public var summary: String { avx512 ? "AVX-512" : (avx2 ? (fma ? "AVX2+FMA" : "AVX2") : "SSE") }
    }

    public let brand: String
    /// What the running CPU supports (cpuid).
    public let runtime: Features
    /// What the binary's native code was compiled for (`-target-cpu` / `-march`).
    public let compiled: Features

    public init() {
        var buffer = [CChar](repeating: 0, count: 64)
        meshlm_cpu_brand(&buffer)
        brand = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        runtime = Features(meshlm_cpu_features_runtime())
        compiled = Features(meshlm_cpu_features_compiled())
    }

    /// The instruction sets the binary uses that this CPU lacks; non-empty means the binary would
    /// die of SIGILL in its kernels, so MeshLM stops with this explanation first.
    public var missingFeatures: [String] {
        var missing: [String] = []
        if compiled.avx512 && !runtime.avx512 { missing.append("AVX-512") }
        if compiled.avx2 && !runtime.avx2 { missing.append("AVX2") }
        if compiled.fma && !runtime.fma { missing.append("FMA") }
        return missing
    }

    /// Logical CPUs this process may run on (its affinity mask, as Foundation reads it).
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }
}

import Foundation
