import Runtime

/// Watches a DPO run for the known displacement: the chosen answers' log-probabilities falling
/// steadily while the margin over the rejected ones grows (both answers lose likelihood; the
/// policy drifts towards text neither answer holds). Steps are averaged in blocks; when
/// `fallingBlocks` block averages of `logps/chosen` in a row each fall, and the last lies below
/// the first block's by more than `threshold` × its magnitude, it warns once.
public final class DisplacementWatch {
    public let blockSize: Int
    public let fallingBlocks: Int
    public let threshold: Double
    private let log: Log
    private var current: [Double] = []
    private var blocks: [Double] = []
    public private(set) var warned = false

    public init(blockSize: Int, fallingBlocks: Int = 3, threshold: Double = 0.1, log: Log) {
        self.blockSize = max(1, blockSize)
        self.fallingBlocks = fallingBlocks
        self.threshold = threshold
        self.log = log
    }

    /// Adds one step's metrics (`logps/chosen`, `rewards/margins`).
    public func observe(_ result: StepResult) {
        guard !warned, let chosen = result.metrics["logps/chosen"] else { return }
        current.append(chosen)
        guard current.count == blockSize else { return }
        blocks.append(current.reduce(0, +) / Double(blockSize))
        current.removeAll()
        guard let first = blocks.first, blocks.count > fallingBlocks else { return }
        let recent = blocks.suffix(fallingBlocks + 1)
        let falling = zip(recent.dropLast(), recent.dropFirst()).allSatisfy { $1 < $0 }
        guard falling, let last = blocks.last, first - last > threshold * abs(first) else { return }
        warned = true
        log.warning(String(format: "step %d: logps/chosen has fallen for %d blocks of %d steps in a row (%.2f → %.2f) while "
                           + "rewards/margins is %.3f: the chosen answers lose likelihood with the rejected ones (DPO's known "
                           + "displacement). An NLL term on the chosen answers (RPO: dpo.loss_type [sigmoid, sft], loss_weights [1, 0.2–1]), a larger dpo.beta or "
                           + "a lower optimizer.lr counter it.",
                           result.step, fallingBlocks, blockSize, first, last, result.metrics["rewards/margins"] ?? 0))
    }
}
