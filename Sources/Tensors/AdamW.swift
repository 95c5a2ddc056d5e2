import Foundation

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW` computes it.
public enum AdamW {
    /// The optimizer's settings for one parameter group.
    public struct Settings: Sendable, Equatable {
        public var learningRate: Float
        public var beta1: Float
        public var beta2: Float
        public var epsilon: Float
        /// Decoupled: multiplies the parameter (`p -= lr·weightDecay·p`), not added to the
        /// gradient. Usually 0 for norms and biases.
        public var weightDecay: Float

        public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                    epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
            self.learningRate = learningRate
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
        }
    }

    /// Where `update` copies the values it is about to overwrite (each nil: not copied), indexed
    /// like the arrays it updates: a checkpoint snapshot taken in the optimizer's own pass over
    /// memory instead of a separate copy (docs/checkpoints.md, "Asynchronous saving").
    public struct Snapshot: @unchecked Sendable {
        public var parameters: UnsafeMutablePointer<Float>?
        public var firstMoments: UnsafeMutablePointer<Float>?
        public var secondMoments: UnsafeMutablePointer<Float>?

        public init(parameters: UnsafeMutablePointer<Float>?, firstMoments: UnsafeMutablePointer<Float>?,
                    secondMoments: UnsafeMutablePointer<Float>?) {
            self.parameters = parameters
            self.firstMoments = firstMoments
            self.secondMoments = secondMoments
        }
    }

    /// Elements copied then updated at a time with a snapshot: 3 × 16 KB stays in L1/L2.
    static let snapshotPiece = 4096

    /// One update of a flat range of parameters (`step` counts from 1):
    ///
    ///     p  ← p − lr·weightDecay·p
    ///     m  ← m + (1 − β₁)(g − m),   v ← β₂v + (1 − β₂)g²      (torch's lerp_ and addcmul_)
    ///     p  ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
    ///
    ///     parameters, gradients, firstMoments, secondMoments  [count]
    ///
    /// Elementwise, so ZeRO can update any shard of a flat buffer with the same call.
    /// `gradientScale` multiplies every gradient first (global-norm clipping) without a separate
    /// pass over memory; 1 changes nothing. With `snapshot`, the old values of each array it names
    /// are copied there first (the update's results are the same, bit for bit).
    public static func update(
        parameters: UnsafeMutablePointer<Float>,
        firstMoments: UnsafeMutablePointer<Float>, secondMoments: UnsafeMutablePointer<Float>,
        gradients: UnsafePointer<Float>,
        count: Int, step: Int, settings: Settings, gradientScale: Float = 1,
        snapshot: Snapshot? = nil, threads: KernelThreads = .single
    ) {
        precondition(step >= 1, "AdamW steps count from 1, not \(step)")
        let beta1 = settings.beta1, beta2 = settings.beta2
        let biasCorrection1 = 1 - Float(pow(Double(beta1), Double(step)))
        let biasCorrection2 = 1 - Float(pow(Double(beta2), Double(step)))
        let stepSize = settings.learningRate / biasCorrection1
        let correction2Root = biasCorrection2.squareRoot()
        let decay = 1 - settings.learningRate * settings.weightDecay
        let epsilon = settings.epsilon
        func updateRange(_ range: Range<Int>) {
            var index = range.lowerBound
            while index + Vector.width <= range.upperBound {
                let g = Vector.load(gradients + index) * gradientScale
                let oldM = Vector.load(firstMoments + index)
                let m = oldM + (1 - beta1) * (g - oldM)
                let v = beta2 * Vector.load(secondMoments + index) + (1 - beta2) * g * g
                let denominator = Vector.squareRoot(v) / correction2Root + epsilon
                let p = Vector.load(parameters + index) * decay - stepSize * m / denominator
                Vector.store(m, firstMoments + index)
                Vector.store(v, secondMoments + index)
                Vector.store(p, parameters + index)
                index += Vector.width
            }
            while index < range.upperBound {
                let g = gradients[index] * gradientScale
                let m = firstMoments[index] + (1 - beta1) * (g - firstMoments[index])
                let v = beta2 * secondMoments[index] + (1 - beta2) * g * g
                let denominator = Vector.squareRoot(v) / correction2Root + epsilon
                parameters[index] = parameters[index] * decay - stepSize * m / denominator
                firstMoments[index] = m
                secondMoments[index] = v
                index += 1
            }
        }
        threads.parallelFor(0..<count, minimumChunk: 1 << 14) { range in
            guard let snapshot else {
                updateRange(range)
                return
            }
            // Copy-before-write in cache-sized pieces: the copy reads each piece into cache
            // and the update that follows finds it there, so the snapshot costs only its writes.
            var pieceStart = range.lowerBound
            while pieceStart < range.upperBound {
                let piece = pieceStart..<Swift.min(pieceStart + snapshotPiece, range.upperBound)
                snapshot.parameters?.advanced(by: piece.lowerBound).update(from: parameters + piece.lowerBound, count: piece.count)
                snapshot.firstMoments?.advanced(by: piece.lowerBound).update(from: firstMoments + piece.lowerBound, count: piece.count)
                snapshot.secondMoments?.advanced(by: piece.lowerBound).update(from: secondMoments + piece.lowerBound, count: piece.count)
                updateRange(piece)
                pieceStart = piece.upperBound
            }
        }
    }
}
