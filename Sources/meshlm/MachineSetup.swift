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

    /// The variable that says the process already restarted itself without `OPENBLAS_CORETYPE`.
    static let unsetMarker = "MESHLM_UNSET_OPENBLAS_CORETYPE"
    /// Set to 1 to keep a preset `OPENBLAS_CORETYPE` (and get the warning instead).
    static let keepVariable = "MESHLM_KEEP_OPENBLAS_CORETYPE"

    /// OpenBLAS reads `OPENBLAS_CORETYPE` once, when it is loaded, so a preset that forces kernels
    /// below this CPU (machines here preset Haswell on AVX-512 CPUs: half the sgemm speed, and
    /// measured 700× slower with two kernel threads calling sgemm at once) can only be undone by
    /// starting again without it. Before MPI starts, the process replaces itself with the same
    /// command without the variable (same PID, so mpirun and srun see nothing), unless
    /// `MESHLM_KEEP_OPENBLAS_CORETYPE=1`.
    static func restartWithoutForcedCoreType() {
        guard let preset = environmentValue("OPENBLAS_CORETYPE"), environmentValue(keepVariable) != "1",
              environmentValue(unsetMarker) == nil, blasWarning(cpu: CPUInfo()) != nil else { return }
        setenv(unsetMarker, preset, 1)
        unsetenv("OPENBLAS_CORETYPE")
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached if exec failed: carry on with the preset; start-up warns about it.
        setenv("OPENBLAS_CORETYPE", preset, 1)
        unsetenv(unsetMarker)
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
            "blas: OpenBLAS core \(BLASLibrary.coreName); \(BLASLibrary.configuration)"
                + (environmentValue(unsetMarker).map { " (OPENBLAS_CORETYPE=\($0) was unset at start-up: it forced kernels below this CPU's; \(keepVariable)=1 keeps it)" } ?? ""),
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
