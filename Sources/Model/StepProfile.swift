import Foundation
import Runtime

/// Where a training step's time goes, kernel by kernel: what `meshlm bench train` prints. The
/// model times each kernel call when it has a profile (`LlamaModel.profile`), and only then.
public final class StepProfile {
    public enum Kernel: String, CaseIterable, Sendable {
        case embedding, rmsnorm, matmul, rope, attention, swiglu, residual
        /// A sparse layer's routing, gathers and weighted combine (its products count as matmul).
        case experts
        case crossEntropy = "cross_entropy"
    }

    public enum Direction: String, CaseIterable, Sendable { case forward, backward }

    public struct Key: Hashable, Sendable {
        public let kernel: Kernel
        public let direction: Direction
        public init(kernel: Kernel, direction: Direction) {
            self.kernel = kernel
            self.direction = direction
        }
    }

    public private(set) var seconds: [Key: Double] = [:]
    public private(set) var calls: [Key: Int] = [:]

    public init() {}

    public func reset() {
        seconds = [:]
        calls = [:]
    }

    /// Runs `body`, adding its duration to the kernel's total.
    @inline(__always)
    func measure(_ kernel: Kernel, _ direction: Direction, _ body: () -> Void) {
        let start = monotonicSeconds()
        body()
        let key = Key(kernel: kernel, direction: direction)
        seconds[key, default: 0] += monotonicSeconds() - start
        calls[key, default: 0] += 1
    }

    public var totalSeconds: Double { seconds.values.reduce(0, +) }
}
