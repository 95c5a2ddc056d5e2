import Foundation

/// One axis of a plot panel: the range it shows, linear or logarithmic, and ticks at round
/// values (1, 2, 5 × 10ⁿ on a linear axis; 1, 2, 3, 5 × 10ⁿ or denser on a logarithmic one).
public struct PlotAxis: Sendable, Equatable {
    public enum Scale: Sendable, Equatable { case linear, logarithmic }

    public let scale: Scale
    /// The value at the axis's start and end.
    public let lower: Double
    public let upper: Double
    public let ticks: [Double]
    /// Distance between linear ticks (decides the decimals of the labels).
    private let tickStep: Double

    /// An axis covering `values` (non-empty; positive on a logarithmic axis, others are ignored).
    /// A linear axis ends on ticks; `includeZero` starts it at 0 when every value is positive.
    public init(covering values: [Double], scale: Scale, includeZero: Bool = false, tickCount: Int = 6) {
        self.scale = scale
        let finite = values.filter { $0.isFinite && (scale == .linear || $0 > 0) }
        var low = finite.min() ?? (scale == .linear ? 0 : 1)
        var high = finite.max() ?? (scale == .linear ? 1 : 10)
        if includeZero && scale == .linear { low = min(low, 0) }
        switch scale {
        case .linear:
            if high - low < 1e-12 * max(1, abs(high)) {
                let margin = high == 0 ? 1 : abs(high) * 0.1
                (low, high) = (low - margin, high + margin)
            }
            let step = PlotAxis.roundStep((high - low) / Double(tickCount - 1))
            lower = (low / step).rounded(.down) * step
            upper = (high / step).rounded(.up) * step
            tickStep = step
            ticks = stride(from: lower, through: upper + step / 2, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
        case .logarithmic:
            if high / low < 1.0001 { (low, high) = (low / 1.5, high * 1.5) }
            let margin = pow(high / low, 0.04)
            lower = low / margin
            upper = high * margin
            (ticks, tickStep) = PlotAxis.logarithmicTicks(lower: lower, upper: upper, tickCount: tickCount)
        }
    }

    /// Where `value` falls on the axis: 0 at `lower`, 1 at `upper`.
    public func fraction(_ value: Double) -> Double {
        switch scale {
        case .linear: return (value - lower) / (upper - lower)
        case .logarithmic: return log(max(value, Double.leastNormalMagnitude) / lower) / log(upper / lower)
        }
    }

    /// A tick label: no more decimals than the ticks need; thousands as k, millions as M.
    public func label(_ value: Double) -> String {
        let step = tickStep > 0 ? tickStep : PlotAxis.magnitude(value)
        for (divisor, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] where abs(value) >= divisor && upper >= 1e4 {
            return PlotAxis.decimal(value / divisor, step: step / divisor) + suffix
        }
        return PlotAxis.decimal(value, step: step)
    }

    private static func decimal(_ value: Double, step: Double) -> String {
        let decimals = max(0, min(6, Int((-log10(step)).rounded(.up))))
        let text = String(format: "%.\(decimals)f", value)
        return text == "-0" ? "0" : text
    }

    /// The power of ten at or below `value`.
    private static func magnitude(_ value: Double) -> Double {
        pow(10, log10(abs(value)).rounded(.down))
    }

    /// 1, 2 or 5 × 10ⁿ, the smallest at or above `rough`.
    static func roundStep(_ rough: Double) -> Double {
        let power = magnitude(rough)
        for multiple in [1.0, 2, 5, 10] where multiple * power >= rough * (1 - 1e-9) { return multiple * power }
        return 10 * power
    }

    /// The sparsest mantissa set that puts at least 4 ticks in range; a range too narrow for
    /// any (loss 2.5 to 4.5) gets round linear ticks instead, placed logarithmically.
    private static func logarithmicTicks(lower: Double, upper: Double, tickCount: Int) -> ([Double], Double) {
        let mantissaSets: [[Double]] = [[1], [1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
        let firstPower = Int(log10(lower).rounded(.down)), lastPower = Int(log10(upper).rounded(.up))
        for mantissas in mantissaSets {
            var ticks: [Double] = []
            for power in firstPower...lastPower {
                for mantissa in mantissas {
                    let tick = mantissa * pow(10, Double(power))
                    if tick >= lower && tick <= upper { ticks.append(tick) }
                }
            }
            if ticks.count >= 4 { return (ticks, 0) }
        }
        var step = roundStep((upper - lower) / Double(tickCount - 1))
        var ticks: [Double] = []
        repeat {
            let first = (lower / step).rounded(.up) * step
            ticks = stride(from: first, through: upper, by: step).map { $0 }
            if ticks.count < 4 { step = roundStep(step / 2.5) }   // the next smaller of 1, 2, 5 × 10ⁿ
        } while ticks.count < 4
        return (ticks, step)
    }
}
