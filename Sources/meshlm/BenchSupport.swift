import ArgumentParser
import Foundation
import Runtime

/// Seconds per call of a timed body: median and range over repeats.
struct Timing {
    let median: Double
    let minimum: Double
    let maximum: Double
    let repeats: Int

    /// Calls `body` once to warm up and calibrate, then `repeats` times a batch of calls that
    /// lasts at least `minimumSeconds`, and reports seconds per call.
    static func measure(repeats: Int, minimumSeconds: Double, _ body: () throws -> Void) rethrows -> Timing {
        let warm = monotonicSeconds()
        try body()
        let once = max(monotonicSeconds() - warm, 1e-7)
        let calls = max(1, Int(minimumSeconds / once))
        var samples: [Double] = []
        for _ in 0..<repeats {
            let start = monotonicSeconds()
            for _ in 0..<calls { try body() }
            samples.append((monotonicSeconds() - start) / Double(calls))
        }
        samples.sort()
        return Timing(median: samples[samples.count / 2], minimum: samples[0], maximum: samples[samples.count - 1], repeats: repeats)
    }

    /// Times `body` and `reference` as `measure` does, alternating their batches (body, reference,
    /// body, …), so a machine that gets busier or quieter during the run slows both alike and the
    /// ratio of their rates stays honest.
    static func measureAlternately(repeats: Int, minimumSeconds: Double, _ body: () -> Void,
                                   reference: () -> Void) -> (body: Timing, reference: Timing) {
        /// Calls of `call` that last at least `minimumSeconds` (after one warm-up call).
        func calls(_ call: () -> Void) -> Int {
            let warm = monotonicSeconds()
            call()
            return max(1, Int(minimumSeconds / max(monotonicSeconds() - warm, 1e-7)))
        }
        /// Seconds per call of a batch of `count` calls.
        func batch(_ call: () -> Void, _ count: Int) -> Double {
            let start = monotonicSeconds()
            for _ in 0..<count { call() }
            return (monotonicSeconds() - start) / Double(count)
        }
        let bodyCalls = calls(body), referenceCalls = calls(reference)
        var bodySamples: [Double] = [], referenceSamples: [Double] = []
        for _ in 0..<repeats {
            bodySamples.append(batch(body, bodyCalls))
            referenceSamples.append(batch(reference, referenceCalls))
        }
        func timing(_ samples: [Double]) -> Timing {
            let sorted = samples.sorted()
            return Timing(median: sorted[sorted.count / 2], minimum: sorted[0], maximum: sorted[sorted.count - 1], repeats: repeats)
        }
        return (timing(bodySamples), timing(referenceSamples))
    }

    /// A rate (work per second) from work per call: median, and the range (slowest, fastest).
    func rate(_ workPerCall: Double) -> (median: Double, low: Double, high: Double) {
        (workPerCall / median, workPerCall / maximum, workPerCall / minimum)
    }
}

/// A benchmark's results: a readable table on standard output, or with `--json` one JSON object
/// per result line (DESIGN §5), so scripts compare runs without parsing prose.
struct BenchReport {
    let bench: String
    let columns: [String]
    let json: Bool
    let log: Log
    private var rows: [[String]] = []

    init(bench: String, columns: [String], json: Bool, log: Log) {
        self.bench = bench
        self.columns = columns
        self.json = json
        self.log = log
    }

    /// Adds one result: `cells` for the table (one per column), `fields` for the JSON line.
    mutating func add(cells: [String], fields: KeyValuePairs<String, Any>) {
        if json {
            var line = JSONLine()
            line.add("bench", bench)
            for (key, value) in fields { line.add(key, value) }
            log.info(line.text)
        } else {
            rows.append(cells)
        }
    }

    /// Prints the table (nothing in JSON mode: every line was printed as it came).
    func printTable() {
        guard !json else { return }
        var widths = columns.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let width = widths[min(index, widths.count - 1)]
                return index == 0 ? cell.padding(toLength: width, withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: max(0, width - cell.count)) + cell
            }.joined(separator: "  ")
        }
        log.info(line(columns))
        log.info(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
        for row in rows { log.info(line(row)) }
    }
}

/// `123.4 (120.1–125.0)`: a median and its range.
func formatRange(_ rate: (median: Double, low: Double, high: Double), scale: Double = 1, digits: Int = 1) -> String {
    let format = "%.\(digits)f"
    return String(format: format, rate.median / scale) + " (" + String(format: format, rate.low / scale)
        + "–" + String(format: format, rate.high / scale) + ")"
}

/// Options every benchmark takes.
struct BenchOptions: ParsableArguments {
    @Flag(help: "One JSON object per result line instead of the table.") var json = false
    @Flag(help: "Fewer sizes and shorter runs (for smoke tests and the quickstart).") var quick = false
    @Option(parsing: .unconditional, help: "Timed repeats per figure; the median and range are reported.") var repeats = 5
}

/// The start-up facts every bench prints first: on standard output for the table, on standard
/// error with `--json` (so standard output holds only JSON lines).
func printMachineReport(_ context: JobContext, json: Bool) {
    for line in MachineSetup.report(context: context) {
        if json { if context.log.rank == 0 { Log.write(line + "\n", to: .standardError) } } else { context.log.info(line) }
    }
}
