import Foundation
#if canImport(FoundationXML)
import FoundationXML   // XMLParser on Linux
#endif
import Runtime
import Testing
import Training

/// `meshlm plot`'s reader and SVG writer: well-formed XML with one curve per run and the run
/// names in the legend, and every kind of bad metrics file as an error naming file and line.
@Suite struct PlotTests {
    /// A run directory holding `metrics.jsonl` with `text`.
    func runDirectory(_ name: String, _ text: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("meshlm-plot-\(getpid())-\(UUID().uuidString.prefix(8))").appendingPathComponent(name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try text.write(to: directory.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
        return directory.path
    }

    /// Rows as `meshlm pretrain` logs them: loss falling from about 10.4, eval every 20 steps.
    func metrics(steps: Int, start: Double, rate: Double) -> String {
        (1...steps).map { step in
            var line = #"{"step":\#(step),"loss":\#(start * exp(-Double(step) / 40) + 2 + 0.05 * sin(Double(step))),"lr":0.0003,"grad_norm":1.2,"tokens_per_s":\#(rate + 30 * cos(Double(step))),"mfu":0.31,"peak_rss_mb":812}"#
            if step % 20 == 0 { line += "\n" + #"{"step":\#(step),"eval_loss":\#(start * exp(-Double(step) / 40) + 2.2)}"# }
            return line
        }.joined(separator: "\n") + "\n"
    }

    /// Elements of a parsed SVG: name and attributes, in document order, and all text content.
    final class Elements: NSObject, XMLParserDelegate {
        var elements: [(name: String, attributes: [String: String])] = []
        var text = ""
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            elements.append((name, attributes))
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
        func paths(_ kind: String) -> [[String: String]] {
            elements.filter { $0.name == "path" && $0.attributes["class"] == kind }.map(\.attributes)
        }
    }

    func parse(_ svg: String) throws -> Elements {
        let parser = XMLParser(data: Data(svg.utf8))
        let elements = Elements()
        parser.delegate = elements
        let parsed = parser.parse()
        #expect(parsed, "SVG is not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")")
        return elements
    }

    @Test func twoRunsDrawOneCurveEachWithTheirNamesInTheLegend() throws {
        let runs = [try PlotRun.read(directory: try runDirectory("baseline", metrics(steps: 100, start: 8.4, rate: 2400))),
                    try PlotRun.read(directory: try runDirectory("tp2 & <wide>", metrics(steps: 60, start: 8.0, rate: 1800)))]
        #expect(runs.map(\.trainLoss.count) == [100, 60])
        #expect(runs.map(\.evalLoss.count) == [5, 3])
        let svg = MetricsPlot(runs: runs).render()
        let elements = try parse(svg)
        #expect(elements.elements.first?.name == "svg")
        #expect(elements.paths("train-loss").map { $0["data-run"] } == ["baseline", "tp2 & <wide>"])
        #expect(elements.paths("tokens-per-second").map { $0["data-run"] } == ["baseline", "tp2 & <wide>"])
        #expect(elements.paths("train-loss-raw").isEmpty)
        #expect(elements.elements.filter { $0.name == "circle" && $0.attributes["class"] == "eval-loss" }.count == 8)
        let legend = elements.elements.filter { $0.attributes["class"] == "legend-name" }
        #expect(legend.count == 2)
        #expect(elements.text.contains("baseline") && elements.text.contains("tp2 & <wide>"))
        // Each run's line has its own color.
        let colors = Set(elements.paths("train-loss").compactMap { $0["stroke"] })
        #expect(colors.count == 2)
        // Every train-loss point becomes a path vertex.
        #expect(elements.paths("train-loss")[0]["d"]?.split(separator: "L").count == 100)
    }

    @Test func smoothingKeepsTheRawCurveFaintAndLogLossStaysInsideThePanel() throws {
        let run = try PlotRun.read(directory: try runDirectory("run", metrics(steps: 50, start: 9, rate: 1000)))
        let svg = MetricsPlot(runs: [run], options: .init(logarithmicLoss: true, smoothingSpan: 10)).render()
        let elements = try parse(svg)
        #expect(elements.paths("train-loss").count == 1)
        #expect(elements.paths("train-loss-raw").count == 1)
        #expect(elements.text.contains("Loss (log scale), EMA over 10 rows"))
        // Every vertex of every curve lies inside its panel (x 84…936).
        for path in elements.paths("train-loss") + elements.paths("train-loss-raw") {
            let numbers = (path["d"] ?? "").split(whereSeparator: { " ML".contains($0) }).compactMap { Double($0) }
            let xs = stride(from: 0, to: numbers.count, by: 2).map { numbers[$0] }
            let ys = stride(from: 1, to: numbers.count, by: 2).map { numbers[$0] }
            #expect(xs.allSatisfy { $0 >= 84 && $0 <= 936 })
            #expect(ys.allSatisfy { $0 >= 64 && $0 <= 440 })
        }
    }

    @Test func exponentialMovingAverage() {
        let points = [1.0, 3, 3, 3].enumerated().map { PlotPoint(x: Double($0.offset), y: $0.element) }
        let smoothed = MetricsPlot.exponentialMovingAverage(points, span: 3).map(\.y)
        #expect(smoothed == [1, 2, 2.5, 2.75])
        #expect(MetricsPlot.exponentialMovingAverage(points, span: 1) == points)
    }

    @Test func axesTickAtRoundValues() {
        let steps = PlotAxis(covering: [1, 100], scale: .linear, tickCount: 6)
        #expect(steps.ticks == [0, 20, 40, 60, 80, 100])
        #expect(steps.label(40) == "40")
        let rates = PlotAxis(covering: [11_800, 24_500], scale: .linear, includeZero: true, tickCount: 5)
        #expect(rates.ticks == [0, 10_000, 20_000, 30_000])
        #expect(rates.ticks.map(rates.label) == ["0", "10k", "20k", "30k"])
        let loss = PlotAxis(covering: [2.1, 10.6], scale: .logarithmic)
        #expect(loss.ticks == [2, 3, 5, 10])
        let narrow = PlotAxis(covering: [2.6, 4.4], scale: .logarithmic)
        #expect(narrow.ticks.map(narrow.label) == ["2.6", "2.8", "3.0", "3.2", "3.4", "3.6", "3.8", "4.0", "4.2", "4.4"])
        #expect(abs(narrow.fraction(narrow.lower)) < 1e-12 && abs(narrow.fraction(narrow.upper) - 1) < 1e-12)
    }

    @Test func aResumedRunReplacesTheRowsItLoggedAgain() throws {
        let text = (1...5).map { #"{"step":\#($0),"loss":\#(10 - Double($0))}"# }.joined(separator: "\n")
            + "\n" + (3...6).map { #"{"step":\#($0),"loss":\#(20 - Double($0))}"# }.joined(separator: "\n")
        let run = try PlotRun.parse(text, name: "run", path: "run/metrics.jsonl")
        #expect(run.trainLoss.map(\.x) == [1, 2, 3, 4, 5, 6])
        #expect(run.trainLoss.map(\.y) == [9, 8, 17, 16, 15, 14])
    }

    /// Rows as a preference objective logs them: TRL's names, slashes included, beside fields
    /// that are not numbers (strings, arrays, `null`), which are read past.
    func preferenceMetrics(steps: Int, margin: Double) -> String {
        (1...steps).map { step in
            let chosen = -0.5 + margin * Double(step) / Double(steps)
            return #"{"step":\#(step),"loss":\#(0.69 - 0.3 * Double(step) / Double(steps)),"tokens_per_s":900,"rewards/chosen":\#(chosen),"rewards/rejected":-0.5,"rewards/margins":\#(chosen + 0.5),"objective":"dpo","peak_rss_mb_per_rank":[812,790],"kl":\#(step % 2 == 0 ? "null" : "0.01")}"#
        }.joined(separator: "\n") + "\n"
    }

    @Test func everyNumericFieldIsASeriesByName() throws {
        let run = try PlotRun.parse(preferenceMetrics(steps: 4, margin: 1), name: "dpo", path: "dpo/metrics.jsonl")
        #expect(run.series.keys.sorted() == ["kl", "loss", "rewards/chosen", "rewards/margins", "rewards/rejected", "tokens_per_s"])
        #expect(run.series["rewards/chosen"] == [PlotPoint(x: 1, y: -0.25), PlotPoint(x: 2, y: 0), PlotPoint(x: 3, y: 0.25), PlotPoint(x: 4, y: 0.5)])
        #expect(run.series["rewards/margins"]?.map(\.y) == [0.25, 0.5, 0.75, 1])
        // Rows whose field is null are skipped, not drawn as zero.
        #expect(run.series["kl"] == [PlotPoint(x: 1, y: 0.01), PlotPoint(x: 3, y: 0.01)])
        #expect(run.trainLoss.count == 4 && run.tokensPerSecond.count == 4 && run.evalLoss.isEmpty)
        // A field logged only by some rows: its series has just those steps.
        let sparse = try PlotRun.parse(#"{"step":1,"loss":3}"# + "\n" + #"{"step":2,"loss":2.5,"supervised_tokens":4096}"# + "\n"
                                       + #"{"step":3,"loss":2.25,"ok":true}"#, name: "sft", path: "sft/metrics.jsonl")
        #expect(sparse.series["supervised_tokens"] == [PlotPoint(x: 2, y: 4096)])
        #expect(sparse.series["ok"] == nil)
    }

    @Test func aResumedRunReplacesTheMetricRowsItLoggedAgain() throws {
        let text = (1...5).map { #"{"step":\#($0),"loss":1,"rewards/margins":\#(Double($0))}"# }.joined(separator: "\n")
            + "\n" + (3...6).map { #"{"step":\#($0),"loss":1,"rewards/margins":\#(10 * Double($0))}"# }.joined(separator: "\n")
        let run = try PlotRun.parse(text, name: "run", path: "run/metrics.jsonl")
        #expect(run.series["rewards/margins"]?.map(\.x) == [1, 2, 3, 4, 5, 6])
        #expect(run.series["rewards/margins"]?.map(\.y) == [1, 2, 30, 40, 50, 60])
    }

    @Test func eachMetricGetsAPanelWithOneCurvePerRun() throws {
        let runs = [try PlotRun.parse(preferenceMetrics(steps: 30, margin: 1), name: "beta-0.1", path: "a/metrics.jsonl"),
                    try PlotRun.parse(preferenceMetrics(steps: 20, margin: 2), name: "beta-0.5", path: "b/metrics.jsonl"),
                    try PlotRun.read(directory: try runDirectory("pretrain", metrics(steps: 10, start: 8, rate: 1000)))]
        let metrics = ["rewards/margins", "kl", "rewards/margins"]
        try MetricsPlot.checkMetrics(metrics, in: runs)
        let plain = MetricsPlot(runs: runs).render()
        let svg = MetricsPlot(runs: runs, options: .init(smoothingSpan: 5, metrics: metrics)).render()
        let elements = try parse(svg)
        // One panel per distinct name, in the order given, below the default two.
        let titles = elements.elements.filter { $0.attributes["class"] == "metric-title" }
        #expect(titles.count == 2)
        #expect(elements.text.contains("rewards/margins, EMA over 5 rows (raw rows faint)"))
        #expect(elements.text.contains("kl, EMA over 5 rows (raw rows faint)"))
        #expect(elements.text.range(of: "Throughput")!.lowerBound < elements.text.range(of: "rewards/margins, EMA")!.lowerBound)
        #expect(elements.text.range(of: "rewards/margins, EMA")!.lowerBound < elements.text.range(of: "kl, EMA")!.lowerBound)
        #expect(elements.elements[0].attributes["height"] == "1452.0")   // 820 + 2 × (220 + 96)
        // A curve for each run that has the field; the run without it has none.
        let curves = elements.paths("metric")
        #expect(curves.map { $0["data-metric"]! + " " + $0["data-run"]! }
                == ["rewards/margins beta-0.1", "rewards/margins beta-0.5", "kl beta-0.1", "kl beta-0.5"])
        #expect(elements.paths("metric-raw").count == 4)
        #expect(curves[0]["d"]?.split(separator: "L").count == 30)
        #expect(curves[0]["stroke"] == elements.paths("train-loss")[0]["stroke"])
        #expect(curves[1]["stroke"] == elements.paths("train-loss")[1]["stroke"])
        // Every vertex lies inside its own panel: 852…1072, then 1168…1388.
        for (path, panel) in zip(curves, [(852.0, 1072.0), (852, 1072), (1168, 1388), (1168, 1388)]) {
            let numbers = (path["d"] ?? "").split(whereSeparator: { " ML".contains($0) }).compactMap { Double($0) }
            let ys = stride(from: 1, to: numbers.count, by: 2).map { numbers[$0] }
            #expect(ys.allSatisfy { $0 >= panel.0 && $0 <= panel.1 })
        }
        // Each panel names the runs in their colors.
        #expect(elements.elements.filter { $0.attributes["class"] == "metric-legend" }.count == 2)
        // Without --metric: the plot as before, no metric panel.
        #expect(!plain.contains("metric"))
        #expect(plain.contains(#"height="820.0""#))
    }

    @Test func aMetricNoRunHasIsAnErrorListingTheFieldsTheyHave() throws {
        let runs = [try PlotRun.parse(preferenceMetrics(steps: 3, margin: 1), name: "dpo", path: "dpo/metrics.jsonl"),
                    try PlotRun.parse(#"{"step":1,"loss":3,"supervised_tokens":4096}"#, name: "sft", path: "sft/metrics.jsonl")]
        do {
            try MetricsPlot.checkMetrics(["rewards/chosen", "rewards/accuracies"], in: runs)
            Issue.record("no error")
        } catch {
            #expect(error.description == "--metric rewards/accuracies: no row has 'rewards/accuracies' as a number; the runs' numeric fields are "
                    + "kl, loss, rewards/chosen, rewards/margins, rewards/rejected, supervised_tokens, tokens_per_s")
        }
        try MetricsPlot.checkMetrics(["supervised_tokens", "loss"], in: runs)
    }

    func failure(_ text: String) -> String {
        do {
            _ = try PlotRun.parse(text, name: "run", path: "run/metrics.jsonl")
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func badMetricsNameTheFileAndLine() throws {
        #expect(failure(#"{"step":1,"loss":2.5}"# + "\n" + #"{"step":2,"loss":2.4"# + "\n")
                == #"run/metrics.jsonl:2: malformed JSON: {"step":2,"loss":2.4"#)
        #expect(failure(#"{"step":1,"loss":2.5}"# + "\n\n" + #"{"loss":2.4}"#)
                == #"run/metrics.jsonl:3: row has no 'step': {"loss":2.4}"#)
        #expect(failure(#"{"step":1,"loss":"low"}"#) == #"run/metrics.jsonl:1: 'loss' must be a number: {"step":1,"loss":"low"}"#)
        #expect(failure(#"{"step":1.5,"loss":2}"#) == #"run/metrics.jsonl:1: 'step' must be a whole number: {"step":1.5,"loss":2}"#)
        #expect(failure("[1, 2]") == "run/metrics.jsonl:1: not a JSON object: [1, 2]")
        #expect(failure("") == "run/metrics.jsonl: no rows (the run has not logged a step yet)")
        #expect(failure(#"{"step":1,"lr":0.1}"# + "\n" + #"{"step":2,"loss":null}"#)
                == "run/metrics.jsonl: none of its 2 rows has 'loss' or 'eval_loss'")
        let long = #"{"step":1,"loss":2.5,"lr":0.0003,"grad_norm":1.25,"tokens_per_s":2400.5,"mfu":0.3"#
        #expect(failure(long) == "run/metrics.jsonl:1: malformed JSON: " + String(long.prefix(60)) + "…")
    }

    @Test func missingRunsAndFiles() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-plot-empty-\(getpid())")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(throws: JobError.self) { try PlotRun.read(directory: empty.path) }
        do {
            _ = try PlotRun.read(directory: empty.path)
        } catch {
            #expect(error.description == "\(empty.path)/metrics.jsonl: not found (a run directory holds the metrics.jsonl that meshlm pretrain writes)")
        }
        do {
            _ = try PlotRun.read(directory: "/nonexistent/run")
        } catch {
            #expect(error.description == "/nonexistent/run: no such run directory")
        }
    }
}
