import Runtime

/// The shape of the learning rate after warmup.
public enum DecayShape: String, ConfigChoice {
    case cosine, linear, constant
}

/// Linear warmup from 0 to the peak, then cosine or linear decay to the floor at the last step
/// (Megatron's and nanoGPT's schedule).
public struct LearningRateSchedule: Sendable, Equatable {
    public let peak: Double
    public let floor: Double
    public let warmupSteps: Int
    public let totalSteps: Int
    public let shape: DecayShape

    public init(peak: Double, floor: Double, warmupSteps: Int, totalSteps: Int, shape: DecayShape) {
        self.peak = peak
        self.floor = floor
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.shape = shape
    }

    /// The rate for `step`, counted from 0. Warmup reaches the peak at step `warmupSteps − 1`
    /// (so step 0 already learns); decay reaches the floor at step `totalSteps − 1`.
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step + 1) / Double(warmupSteps) }
        if shape == .constant { return peak }
        let decaySteps = totalSteps - 1 - warmupSteps
        guard decaySteps > 0 else { return peak }
        let progress = min(1, Double(step - warmupSteps) / Double(decaySteps))
        let factor = shape == .cosine ? 0.5 * (1 + cos(Double.pi * progress)) : 1 - progress
        return floor + (peak - floor) * factor
    }
}

#if canImport(Glibc)
import Glibc
#endif
