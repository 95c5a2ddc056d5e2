import ArgumentParser
import Foundation
import Runtime
import Training

/// `meshlm plot RUN...`: one process, no MPI — it only reads `RUN/metrics.jsonl` files.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw runs' loss, tokens/s and any logged metric against step as an SVG (from RUN/metrics.jsonl).",
        discussion: """
            Loss on top (training rows as lines, eval rows as markers), tokens/s below, then a \
            panel per --metric, one color per run, named after its directory. Open the SVG in a \
            browser. docs/plot.md.
            """)

    @Argument(help: ArgumentHelp("Run directories, each holding the metrics.jsonl a training run writes.", valueName: "run"))
    var runs: [String]
    @Option(help: ArgumentHelp("Where to write the SVG (default: plot.svg in the first run's directory).", valueName: "file.svg"))
    var output: String?
    @Flag(help: "Loss on a logarithmic axis.") var logLoss = false
    @Option(parsing: .unconditional, help: ArgumentHelp("Smooth curves with an exponential moving average over about N logged rows.",
                               discussion: "The raw rows stay visible, faint, underneath. 0 or 1: no smoothing.",
                               valueName: "N"))
    var smooth = 0
    @Option(name: .customLong("metric"),
            help: ArgumentHelp("Also draw this numeric field of the rows against step, in a panel of its own (repeatable).",
                               discussion: "Any field a run logs: supervised_tokens, grad_norm, rewards/chosen, …",
                               valueName: "name"))
    var metrics: [String] = []

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run directory: meshlm plot RUN [RUN...]") }
        guard smooth >= 0 else { throw ValidationError("--smooth must be 0 (off) or a number of rows, got \(smooth)") }
        if let output, !output.hasSuffix(".svg") {
            throw ValidationError("--output must name an .svg file, got '\(output)'")
        }
    }

    func run() throws {
        do {
            var loaded: [PlotRun] = []
            for directory in runs { loaded.append(try PlotRun.read(directory: directory)) }
            // Runs in different places may share a directory name: name those by their path.
            let names = loaded.map(\.name)
            for index in loaded.indices where names.filter({ $0 == names[index] }).count > 1 {
                loaded[index].name = runs[index]
            }
            try MetricsPlot.checkMetrics(metrics, in: loaded)
            let plot = MetricsPlot(runs: loaded, options: .init(logarithmicLoss: logLoss, smoothingSpan: smooth, metrics: metrics))
            let path = output ?? URL(fileURLWithPath: runs[0]).appendingPathComponent("plot.svg").path
            let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.fileExists(atPath: parent) else {
                throw JobError("\(path): cannot write: directory \(parent) does not exist")
            }
            do {
                // Written to a temporary name and renamed: never a half-written plot.
                try Data(plot.render().utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            } catch {
                throw JobError("\(path): cannot write: \(FileProblem.reason(error, path: path)); give --output the path of a file in an existing directory")
            }
            let trainRows = loaded.map(\.trainLoss.count).reduce(0, +), evalRows = loaded.map(\.evalLoss.count).reduce(0, +)
            let metricRows = plot.options.metrics.map { metric in
                ", \(loaded.map { $0.series[metric]?.count ?? 0 }.reduce(0, +)) rows of \(metric)"
            }
            print("plot: wrote \(path) (\(loaded.count) run\(loaded.count == 1 ? "" : "s"), \(trainRows) training rows, \(evalRows) eval rows\(metricRows.joined()))")
        } catch {
            // The same one-line form as every SPMD command's errors.
            FileHandle.standardError.write(Data("meshlm: error: \(describe(error))\n".utf8))
            throw ExitCode(1)
        }
    }
}
