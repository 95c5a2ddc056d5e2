import Runtime

/// Per-rank machine setup at start-up; filled in with the BLAS checks once Tensors lands.
enum MachineSetup {
    static func configure(threads: Int, cpu: CPUInfo, log: Log) throws {}
}
