import Foundation

/// A progress line for long work: done/total, rate, elapsed time and ETA, printed by rank 0.
///
/// On a terminal the line is redrawn in place a few times a second; in a log file (Slurm
/// output) a full line is written every `logInterval` seconds instead, so logs stay readable.
public final class ProgressLine {
    private let label: String
    private let total: Int?
    private let unit: String
    private let log: Log
    private let isTerminal: Bool
    private let redrawInterval: Double
    private let start: Double
    private var lastDraw: Double
    private(set) public var completed = 0
    /// A second count shown as a rate only (documents while the line counts bytes).
    private let secondaryUnit: String?
    private(set) public var secondaryCompleted = 0

    public init(label: String, total: Int?, unit: String, log: Log, logInterval: Double = 10, secondaryUnit: String? = nil) {
        self.label = label
        self.secondaryUnit = secondaryUnit
        self.total = total
        self.unit = unit
        self.log = log
        self.isTerminal = isatty(STDERR_FILENO) == 1
        self.redrawInterval = isTerminal ? 0.25 : logInterval
        self.start = monotonicSeconds()
        self.lastDraw = start
    }

    /// Records `count` more units done and redraws when it is time to.
    public func advance(by count: Int = 1, secondary: Int = 0) {
        completed += count
        secondaryCompleted += secondary
        let now = monotonicSeconds()
        if now - lastDraw >= redrawInterval {
            lastDraw = now
            draw(now: now, final: false)
        }
    }

    /// Draws the final line.
    public func finish() {
        draw(now: monotonicSeconds(), final: true)
    }

    /// The line as it would be drawn now (exposed for tests).
    public func render(now: Double) -> String {
        let elapsed = max(now - start, 1e-9)
        let rate = Double(completed) / elapsed
        var text = "\(label) \(completed)"
        if let total, total > 0 {
            let percent = 100 * Double(completed) / Double(total)
            text += "/\(total) (\(String(format: "%.1f", percent))%)"
        }
        text += "  \(formatRate(rate)) \(unit)/s"
        if let secondaryUnit { text += "  \(formatRate(Double(secondaryCompleted) / elapsed)) \(secondaryUnit)/s" }
        text += "  elapsed \(formatDuration(elapsed))"
        if let total, rate > 0, completed < total {
            text += "  ETA \(formatDuration(Double(total - completed) / rate))"
        }
        return text
    }

    private func draw(now: Double, final: Bool) {
        guard log.rank == 0 else { return }
        let line = render(now: now)
        if isTerminal {
            Log.write("\r\u{1B}[K" + line + (final ? "\n" : ""), to: .standardError)
        } else {
            Log.write(line + "\n", to: .standardError)
        }
    }
}

/// Seconds on a monotonic clock, for durations.
public func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// `1:02:03` or `2:03`.
public func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    let hours = total / 3600, minutes = (total % 3600) / 60, secs = total % 60
    return hours > 0 ? String(format: "%d:%02d:%02d", hours, minutes, secs) : String(format: "%d:%02d", minutes, secs)
}

/// Three significant figures with k/M/G suffixes.
public func formatRate(_ value: Double) -> String {
    switch value {
    case 1e9...: return String(format: "%.2fG", value / 1e9)
    case 1e6...: return String(format: "%.2fM", value / 1e6)
    case 1e4...: return String(format: "%.1fk", value / 1e3)
    case 100...: return String(format: "%.0f", value)
    default: return String(format: "%.2f", value)
    }
}
