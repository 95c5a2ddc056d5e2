import ArgumentParser

/// Options every SPMD command takes.
struct JobOptions: ParsableArguments {
    @Flag(name: .long, help: "Print start-up facts (MPI, BLAS build and core type, threads) and more detail.")
    var verbose = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp(
        "Compute threads per rank (kernels and OpenBLAS).",
        discussion: "Default: the cores of this node divided by the ranks on it, at least 1."))
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 {
            throw ValidationError("--threads must be at least 1, got \(threads)")
        }
    }
}
