import Runtime
import Tensors

/// Per-rank machine setup at start-up: OpenBLAS at one thread (a rank's threads belong to
/// `KernelThreads`, which also splits sgemm), and a check that OpenBLAS uses the kernels this
/// CPU deserves.
enum MachineSetup {
    /// OpenBLAS kernel families that use AVX-512 and AVX2 (OpenBLAS 0.3.x names, lower-cased).
    static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
    static let avx2Cores: Set<String> = avx512Cores.union(["haswell", "zen", "skylake"])

    static func configure(threads: Int, cpu: CPUInfo, log: Log) throws {
        BLASLibrary.threadCount = 1
        if let warning = blasWarning(cpu: cpu) { log.warning(warning) }
    }

    /// Why OpenBLAS runs below this CPU's vector width, or nil when it does not.
    static func blasWarning(cpu: CPUInfo) -> String? {
        let core = BLASLibrary.coreName.lowercased()
        let wanted: String
        if cpu.runtime.avx512, !avx512Cores.contains(core) {
            wanted = "AVX-512"
        } else if cpu.runtime.avx2, cpu.runtime.fma, !avx2Cores.contains(core) {
            wanted = "AVX2"
        } else {
            return nil
        }
        let preset = environmentValue("OPENBLAS_CORETYPE").map { " (OPENBLAS_CORETYPE=\($0) is set)" } ?? ""
        return "OpenBLAS runs its \(BLASLibrary.coreName) kernels\(preset) but this CPU supports \(wanted): sgemm runs at about half speed or less. Unset OPENBLAS_CORETYPE (tools/env.sh does) so OpenBLAS picks this CPU's own kernels."
    }

    /// The start-up facts `--verbose` and every benchmark print.
    static func report(context: JobContext) -> [String] {
        let cpu = context.cpu
        return [
            "ranks: \(context.world.size), compute threads per rank: \(context.threads) (OpenBLAS itself: \(BLASLibrary.threadCount))",
            "cpu: \(cpu.brand.isEmpty ? "unknown" : cpu.brand), \(CPUInfo.availableCores) cores available; vectors: CPU \(cpu.runtime.summary), binary built for \(cpu.compiled.summary)",
            "blas: OpenBLAS core \(BLASLibrary.coreName); \(BLASLibrary.configuration)",
            "mpi: \(MPIEnvironment.libraryVersion)",
        ]
    }
}

func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

#if canImport(Glibc)
import Glibc
#endif
