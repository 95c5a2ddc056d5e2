import Foundation
import Runtime

/// Training curves as a standalone SVG: loss against step (training rows as lines, eval rows as
/// markers) above tokens/s against step, then one panel per metric asked for by name, one color
/// per run, sharing the step axis.
///
/// Every curve is one `<path>` whose `class` says what it shows (`train-loss`, `train-loss-raw`
/// under smoothing, `eval-loss-line`, `tokens-per-second`, `metric` and `metric-raw` with a
/// `data-metric` naming the field) and whose `data-run` names its run; eval markers are
/// `<circle class="eval-loss">`.
public struct MetricsPlot: Sendable {
    public struct Options: Sendable {
        /// Loss on a logarithmic axis.
        public var logarithmicLoss = false
        /// Exponential moving average over about this many logged rows (α = 2 / (span + 1));
        /// 0 or 1 draws the rows as logged. The raw curve stays visible, faint, underneath.
        public var smoothingSpan = 0
        /// Fields of the rows (`rewards/chosen`, `kl`, …) drawn each in a panel of its own below
        /// the throughput, in this order.
        public var metrics: [String] = []
        public init(logarithmicLoss: Bool = false, smoothingSpan: Int = 0, metrics: [String] = []) {
            self.logarithmicLoss = logarithmicLoss
            self.smoothingSpan = smoothingSpan
            self.metrics = metrics.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        }
    }

    /// Tableau 10: distinct for the usual handful of runs, and readable by most color-blind eyes.
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    public let runs: [PlotRun]
    public let options: Options

    public init(runs: [PlotRun], options: Options = Options()) {
        self.runs = runs
        self.options = options
    }

    // Layout in SVG user units (px): panels sharing the left and right margins, each metric's
    // panel as tall as the throughput panel and as far below the one above it.
    private let width = 960.0
    private var height: Double { 820 + Double(options.metrics.count) * (metricPanelHeight + panelGap) }
    private let left = 84.0, right = 936.0
    private let lossPanel = (top: 64.0, bottom: 440.0)
    private let throughputPanel = (top: 536.0, bottom: 756.0)
    private let metricPanelHeight = 220.0, panelGap = 96.0

    /// The panel of `options.metrics[index]`.
    private func metricPanel(_ index: Int) -> (top: Double, bottom: Double) {
        let top = throughputPanel.bottom + panelGap + Double(index) * (metricPanelHeight + panelGap)
        return (top, top + metricPanelHeight)
    }

    /// Checks that each of `metrics` is a number in some row of `runs`: a name none has (mistyped,
    /// or logged only by another objective) is an error that lists the fields they do have.
    public static func checkMetrics(_ metrics: [String], in runs: [PlotRun]) throws(JobError) {
        for metric in metrics where !runs.contains(where: { $0.series[metric] != nil }) {
            let fields = Set(runs.flatMap(\.series.keys)).sorted()
            throw JobError("--metric \(metric): no row has '\(metric)' as a number; the runs' numeric fields are \(fields.joined(separator: ", "))")
        }
    }

    /// The whole SVG document.
    public func render() -> String {
        let smoothing = options.smoothingSpan > 1
        let metricPoints = runs.flatMap { run in options.metrics.flatMap { run.series[$0] ?? [] } }
        let steps = (runs.flatMap { $0.trainLoss + $0.evalLoss + $0.tokensPerSecond } + metricPoints).map(\.x)
        let stepAxis = PlotAxis(covering: steps, scale: .linear, tickCount: 9)
        let lossAxis = PlotAxis(covering: runs.flatMap { ($0.trainLoss + $0.evalLoss).map(\.y) },
                                scale: options.logarithmicLoss ? .logarithmic : .linear)
        let rates = runs.flatMap { $0.tokensPerSecond.map(\.y) }
        let rateAxis = PlotAxis(covering: rates, scale: .linear, includeZero: true, tickCount: 5)

        var svg = SVGText()
        svg.line(##"<?xml version="1.0" encoding="UTF-8"?>"##)
        svg.line(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(f(width))" height="\##(f(height))" viewBox="0 0 \##(f(width)) \##(f(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">"##)
        svg.line("<title>\(escape("Training curves: " + runs.map(\.name).joined(separator: ", ")))</title>")
        svg.line(##"<rect width="100%" height="100%" fill="#ffffff"/>"##)
        // Curves are clipped to their panel, with room for a whole marker on the edge.
        let slack = 6.0
        svg.line(##"<defs><clipPath id="loss-area"><rect x="\##(f(left - slack))" y="\##(f(lossPanel.top - slack))" width="\##(f(right - left + 2 * slack))" height="\##(f(lossPanel.bottom - lossPanel.top + 2 * slack))"/></clipPath>"##
            + ##"<clipPath id="rate-area"><rect x="\##(f(left - slack))" y="\##(f(throughputPanel.top - slack))" width="\##(f(right - left + 2 * slack))" height="\##(f(throughputPanel.bottom - throughputPanel.top + 2 * slack))"/></clipPath>"##
            + options.metrics.indices.map { index in
                let panel = metricPanel(index)
                return ##"<clipPath id="metric-area-\##(index)"><rect x="\##(f(left - slack))" y="\##(f(panel.top - slack))" width="\##(f(right - left + 2 * slack))" height="\##(f(panel.bottom - panel.top + 2 * slack))"/></clipPath>"##
            }.joined() + "</defs>")
        var title = "Loss" + (options.logarithmicLoss ? " (log scale)" : "")
        if smoothing { title += ", EMA over \(options.smoothingSpan) rows (raw rows faint)" }
        svg.line(##"<text x="\##(f(left))" y="\##(f(lossPanel.top - 16))" font-size="15" font-weight="bold" fill="#222">\##(escape(title))</text>"##)
        drawAxes(&svg, x: stepAxis, y: lossAxis, panel: lossPanel, yTitle: "loss")

        svg.line(##"<g clip-path="url(#loss-area)">"##)
        for (index, run) in runs.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            let name = escape(run.name)
            let train = run.trainLoss.filter { lossAxis.scale == .linear || $0.y > 0 }
            if smoothing && train.count > 1 {
                svg.line(##"<path class="train-loss-raw" data-run="\##(name)" d="\##(pathData(train, stepAxis, lossAxis, lossPanel))" fill="none" stroke="\##(color)" stroke-opacity="0.22" stroke-width="1"/>"##)
            }
            if !train.isEmpty {
                let curve = smoothing ? Self.exponentialMovingAverage(train, span: options.smoothingSpan) : train
                svg.line(##"<path class="train-loss" data-run="\##(name)" d="\##(pathData(curve, stepAxis, lossAxis, lossPanel))" fill="none" stroke="\##(color)" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"/>"##)
                if curve.count == 1 { dot(&svg, curve[0], stepAxis, lossAxis, lossPanel, color: color) }
            }
            let eval = run.evalLoss.filter { lossAxis.scale == .linear || $0.y > 0 }
            if eval.count > 1 {
                svg.line(##"<path class="eval-loss-line" data-run="\##(name)" d="\##(pathData(eval, stepAxis, lossAxis, lossPanel))" fill="none" stroke="\##(color)" stroke-width="1" stroke-dasharray="4 3" stroke-opacity="0.7"/>"##)
            }
            for point in eval {
                let (x, y) = position(point, stepAxis, lossAxis, lossPanel)
                svg.line(##"<circle class="eval-loss" data-run="\##(name)" cx="\##(f(x))" cy="\##(f(y))" r="4" fill="\##(color)" stroke="#ffffff" stroke-width="1.2"><title>\##(name) step \##(Int(point.x)): eval loss \##(String(format: "%.4f", point.y))</title></circle>"##)
            }
        }
        svg.line("</g>")
        drawLegend(&svg)

        svg.line(##"<text x="\##(f(left))" y="\##(f(throughputPanel.top - 16))" font-size="15" font-weight="bold" fill="#222">Throughput</text>"##)
        drawAxes(&svg, x: stepAxis, y: rateAxis, panel: throughputPanel, yTitle: "tokens/s")
        svg.line(##"<g clip-path="url(#rate-area)">"##)
        for (index, run) in runs.enumerated() where !run.tokensPerSecond.isEmpty {
            let color = Self.palette[index % Self.palette.count]
            let curve = smoothing ? Self.exponentialMovingAverage(run.tokensPerSecond, span: options.smoothingSpan) : run.tokensPerSecond
            svg.line(##"<path class="tokens-per-second" data-run="\##(escape(run.name))" d="\##(pathData(curve, stepAxis, rateAxis, throughputPanel))" fill="none" stroke="\##(color)" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/>"##)
            if curve.count == 1 { dot(&svg, curve[0], stepAxis, rateAxis, throughputPanel, color: color) }
        }
        svg.line("</g>")
        if rates.isEmpty {
            svg.line(##"<text x="\##(f((left + right) / 2))" y="\##(f((throughputPanel.top + throughputPanel.bottom) / 2))" text-anchor="middle" fill="#888">no row has tokens_per_s</text>"##)
        }
        for (index, metric) in options.metrics.enumerated() {
            drawMetric(&svg, metric, panel: metricPanel(index), clipPath: "metric-area-\(index)", stepAxis: stepAxis)
        }
        svg.line("</svg>")
        return svg.text
    }

    /// Exponential moving average with α = 2 / (span + 1), started at the first value (so the
    /// curve starts where the data starts, without the zero-initialised bias).
    public static func exponentialMovingAverage(_ points: [PlotPoint], span: Int) -> [PlotPoint] {
        guard span > 1, var average = points.first?.y else { return points }
        let alpha = 2 / (Double(span) + 1)
        return points.map { point in
            average += alpha * (point.y - average)
            return PlotPoint(x: point.x, y: average)
        }
    }

    // MARK: drawing

    /// One field of the rows against step, a curve per run drawn like the train loss (raw rows
    /// faint under the average when smoothing), with the runs' names in their colors above the
    /// panel's top right corner, since the loss panel's legend may be a long scroll away.
    private func drawMetric(_ svg: inout SVGText, _ metric: String, panel: (top: Double, bottom: Double), clipPath: String, stepAxis: PlotAxis) {
        let smoothing = options.smoothingSpan > 1
        let values = runs.flatMap { ($0.series[metric] ?? []).map(\.y) }
        let axis = PlotAxis(covering: values, scale: .linear, tickCount: 5)
        let title = metric + (smoothing ? ", EMA over \(options.smoothingSpan) rows (raw rows faint)" : "")
        svg.line(##"<text class="metric-title" x="\##(f(left))" y="\##(f(panel.top - 16))" font-size="15" font-weight="bold" fill="#222">\##(escape(title))</text>"##)
        // The runs that log the field, as in the loss panel's legend: a dash in the run's color, its name.
        let key = runs.enumerated().filter { $0.element.series[metric] != nil }.map { index, run in
            let color = Self.palette[index % Self.palette.count]
            return ##"<tspan dx="14" fill="\##(color)" font-size="16" font-weight="bold">—</tspan><tspan dx="5">\##(escape(run.name))</tspan>"##
        }
        if !key.isEmpty {
            svg.line(##"<text class="metric-legend" x="\##(f(right))" y="\##(f(panel.top - 16))" text-anchor="end" fill="#222">\##(key.joined())</text>"##)
        }
        drawAxes(&svg, x: stepAxis, y: axis, panel: panel, yTitle: metric)
        svg.line(##"<g clip-path="url(#\##(clipPath))">"##)
        for (index, run) in runs.enumerated() {
            guard let points = run.series[metric], !points.isEmpty else { continue }
            let color = Self.palette[index % Self.palette.count]
            let names = ##"data-metric="\##(escape(metric))" data-run="\##(escape(run.name))""##
            if smoothing && points.count > 1 {
                svg.line(##"<path class="metric-raw" \##(names) d="\##(pathData(points, stepAxis, axis, panel))" fill="none" stroke="\##(color)" stroke-opacity="0.22" stroke-width="1"/>"##)
            }
            let curve = smoothing ? Self.exponentialMovingAverage(points, span: options.smoothingSpan) : points
            svg.line(##"<path class="metric" \##(names) d="\##(pathData(curve, stepAxis, axis, panel))" fill="none" stroke="\##(color)" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/>"##)
            if curve.count == 1 { dot(&svg, curve[0], stepAxis, axis, panel, color: color) }
        }
        svg.line("</g>")
        if values.isEmpty {
            svg.line(##"<text x="\##(f((left + right) / 2))" y="\##(f((panel.top + panel.bottom) / 2))" text-anchor="middle" fill="#888">no row has \##(escape(metric))</text>"##)
        }
    }

    private func drawAxes(_ svg: inout SVGText, x: PlotAxis, y: PlotAxis, panel: (top: Double, bottom: Double), yTitle: String) {
        svg.line(##"<g class="grid" stroke="#e6e6e6" stroke-width="1">"##)
        for tick in y.ticks {
            let py = panel.bottom - y.fraction(tick) * (panel.bottom - panel.top)
            svg.line(##"<line x1="\##(f(left))" y1="\##(f(py))" x2="\##(f(right))" y2="\##(f(py))"/>"##)
        }
        for tick in x.ticks {
            let px = left + x.fraction(tick) * (right - left)
            svg.line(##"<line x1="\##(f(px))" y1="\##(f(panel.top))" x2="\##(f(px))" y2="\##(f(panel.bottom))"/>"##)
        }
        svg.line("</g>")
        svg.line(##"<rect x="\##(f(left))" y="\##(f(panel.top))" width="\##(f(right - left))" height="\##(f(panel.bottom - panel.top))" fill="none" stroke="#444" stroke-width="1"/>"##)
        svg.line(##"<g class="ticks" fill="#333">"##)
        for tick in y.ticks {
            let py = panel.bottom - y.fraction(tick) * (panel.bottom - panel.top)
            svg.line(##"<line x1="\##(f(left - 5))" y1="\##(f(py))" x2="\##(f(left))" y2="\##(f(py))" stroke="#444"/><text x="\##(f(left - 8))" y="\##(f(py + 4))" text-anchor="end">\##(y.label(tick))</text>"##)
        }
        for tick in x.ticks {
            let px = left + x.fraction(tick) * (right - left)
            svg.line(##"<line x1="\##(f(px))" y1="\##(f(panel.bottom))" x2="\##(f(px))" y2="\##(f(panel.bottom + 5))" stroke="#444"/><text x="\##(f(px))" y="\##(f(panel.bottom + 19))" text-anchor="middle">\##(x.label(tick))</text>"##)
        }
        svg.line("</g>")
        svg.line(##"<text x="\##(f((left + right) / 2))" y="\##(f(panel.bottom + 38))" text-anchor="middle" font-size="13" fill="#222">step</text>"##)
        let middle = (panel.top + panel.bottom) / 2
        svg.line(##"<text x="22" y="\##(f(middle))" text-anchor="middle" font-size="13" fill="#222" transform="rotate(-90 22 \##(f(middle)))">\##(escape(yTitle))</text>"##)
    }

    /// Top right of the loss panel, where falling loss curves leave room: one entry per run,
    /// then what a line and a marker mean.
    private func drawLegend(_ svg: inout SVGText) {
        let hasEval = runs.contains { !$0.evalLoss.isEmpty }
        let hasTrain = runs.contains { !$0.trainLoss.isEmpty }
        let names = runs.map(\.name)
        let keys = (hasTrain ? ["train loss"] : []) + (hasEval ? ["eval loss"] : [])
        let longest = (names + keys).map { $0.count }.max() ?? 0
        let rowHeight = 18.0
        let boxWidth = 44 + 7 * Double(longest)
        let boxHeight = 10 + rowHeight * Double(names.count + keys.count) + (keys.isEmpty ? 0 : 6)
        let x0 = right - 12 - boxWidth, y0 = lossPanel.top + 12
        svg.line(##"<g class="legend">"##)
        svg.line(##"<rect x="\##(f(x0))" y="\##(f(y0))" width="\##(f(boxWidth))" height="\##(f(boxHeight))" rx="3" fill="#ffffff" fill-opacity="0.9" stroke="#bbbbbb"/>"##)
        var rowY = y0 + 5 + rowHeight / 2
        for (index, name) in names.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            svg.line(##"<line x1="\##(f(x0 + 8))" y1="\##(f(rowY))" x2="\##(f(x0 + 32))" y2="\##(f(rowY))" stroke="\##(color)" stroke-width="2.5"/><text class="legend-name" x="\##(f(x0 + 38))" y="\##(f(rowY + 4))" fill="#222">\##(escape(name))</text>"##)
            rowY += rowHeight
        }
        if !keys.isEmpty {
            svg.line(##"<line x1="\##(f(x0 + 6))" y1="\##(f(rowY - rowHeight / 2 + 3))" x2="\##(f(x0 + boxWidth - 6))" y2="\##(f(rowY - rowHeight / 2 + 3))" stroke="#dddddd"/>"##)
            rowY += 6
        }
        if hasTrain {
            svg.line(##"<line x1="\##(f(x0 + 8))" y1="\##(f(rowY))" x2="\##(f(x0 + 32))" y2="\##(f(rowY))" stroke="#666" stroke-width="1.8"/><text x="\##(f(x0 + 38))" y="\##(f(rowY + 4))" fill="#555">train loss</text>"##)
            rowY += rowHeight
        }
        if hasEval {
            svg.line(##"<circle cx="\##(f(x0 + 20))" cy="\##(f(rowY))" r="4" fill="#666" stroke="#ffffff" stroke-width="1.2"/><text x="\##(f(x0 + 38))" y="\##(f(rowY + 4))" fill="#555">eval loss</text>"##)
        }
        svg.line("</g>")
    }

    private func position(_ point: PlotPoint, _ x: PlotAxis, _ y: PlotAxis, _ panel: (top: Double, bottom: Double)) -> (Double, Double) {
        (left + x.fraction(point.x) * (right - left), panel.bottom - y.fraction(point.y) * (panel.bottom - panel.top))
    }

    /// A curve of one point, which a path alone would not show.
    private func dot(_ svg: inout SVGText, _ point: PlotPoint, _ x: PlotAxis, _ y: PlotAxis, _ panel: (top: Double, bottom: Double), color: String) {
        let (px, py) = position(point, x, y, panel)
        svg.line(##"<circle cx="\##(f(px))" cy="\##(f(py))" r="2.5" fill="\##(color)"/>"##)
    }

    /// `M x y L x y …`
    private func pathData(_ points: [PlotPoint], _ x: PlotAxis, _ y: PlotAxis, _ panel: (top: Double, bottom: Double)) -> String {
        var data = ""
        for (index, point) in points.enumerated() {
            let (px, py) = position(point, x, y, panel)
            data += (index == 0 ? "M" : " L") + f(px) + " " + f(py)
        }
        return data
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// The text of an SVG document, line by line.
private struct SVGText {
    var text = ""
    mutating func line(_ line: String) { text += line + "\n" }
}

/// `text` safe inside an XML element or a double-quoted attribute.
private func escape(_ text: String) -> String {
    var result = ""
    for character in text {
        switch character {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"": result += "&quot;"
        case "'": result += "&apos;"
        default: result.append(character)
        }
    }
    return result
}
