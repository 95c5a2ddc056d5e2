import ArgumentParser
import Runtime
import Tensors

struct BenchGemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "sgemm GFLOP/s (all transposes) as a fraction of this CPU's fp32 FMA peak, measured in the same run.")

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(parsing: .upToNextOption, help: "Square sizes n (default 256 512 1024 2048; --quick: 256 1024).") var sizes: [Int] = []

    func run() throws {
        try job.runJob { context in
            printMachineReport(context, json: bench.json)
            let sizes = self.sizes.isEmpty ? (bench.quick ? [256, 1024] : [256, 512, 1024, 2048]) : self.sizes
            let seconds = bench.quick ? 0.05 : 0.25
            var report = BenchReport(bench: "gemm", columns: ["threads", "op", "n", "GFLOP/s median (range)", "peak GFLOP/s", "of peak"],
                                     json: bench.json, log: context.log)
            for threadCount in Set([1, context.threads]).sorted() {
                let threads = KernelThreads(count: threadCount)
                let peak = CPUInfo.measureFMAPeak(threads: threadCount, seconds: bench.quick ? 0.05 : 0.1)
                var cases: [(Transpose, Transpose, Int)] = sizes.map { (.none, .none, $0) }
                let transposeSize = sizes.contains(1024) ? 1024 : (sizes.max() ?? 1024)
                cases += [(.none, .transposed, transposeSize), (.transposed, .none, transposeSize), (.transposed, .transposed, transposeSize)]
                for (aTranspose, bTranspose, n) in cases {
                    let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
                    var generator = SplitMix64(seed: UInt64(n))
                    a.fillNormal(standardDeviation: 1, generator: &generator)
                    b.fillNormal(standardDeviation: 1, generator: &generator)
                    let timing = Timing.measure(repeats: bench.repeats, minimumSeconds: seconds) {
                        BLAS.multiply(output: c.pointer, a: a.pointer, aTranspose: aTranspose, b: b.pointer, bTranspose: bTranspose,
                                      rowCount: n, columnCount: n, innerCount: n, threads: threads)
                    }
                    let gflops = timing.rate(2 * Double(n) * Double(n) * Double(n) / 1e9)
                    let op = (aTranspose == .none ? "N" : "T") + (bTranspose == .none ? "N" : "T")
                    report.add(cells: ["\(threadCount)", op, "\(n)", formatRange(gflops), String(format: "%.1f", peak),
                                       String(format: "%.1f%%", 100 * gflops.median / peak)],
                               fields: ["threads": threadCount, "op": op, "n": n, "gflops": gflops.median, "gflops_min": gflops.low,
                                        "gflops_max": gflops.high, "repeats": timing.repeats, "peak_gflops": peak,
                                        "fraction_of_peak": gflops.median / peak, "blas_core": BLASLibrary.coreName])
                }
            }
            report.printTable()
        }
    }
}
