import Foundation
import Testing

/// `meshlm bench train` as the figures in docs/benchmarks.md come from it.
@Suite struct BenchTrainTests {
    /// A short measured run on 2 ranks: MFU (executed FLOPs per token × tokens/s over 2 cores ×
    /// the FMA peak of one) is a fraction, and its parts are the ones reported beside it.
    @Test func mfuOfAMeasuredRunIsAFraction() throws {
        let model = repositoryRoot.appendingPathComponent("configs/model/tiny.yaml").path
        let launch = try Launcher.mpirun(2, "meshlm", ["bench", "train", "--model", model, "--seq-len", "128", "--micro-batch", "2",
                                                       "--steps", "2", "--threads", "1", "--json"])
        #expect(launch.status == 0, "\(launch.standardError)")
        let rows = launch.lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        let step = try #require(rows.first { $0["part"] as? String == "step" }, "\(launch.standardOutput)")
        let mfu = try #require(step["mfu"] as? Double), rate = try #require(step["tokens_per_s"] as? Double)
        let peak = try #require(step["peak_gflops"] as? Double), perCore = try #require(step["peak_gflops_per_core"] as? Double)
        let flops = try #require(step["flops_per_token"] as? Double)
        print("bench train tiny, 2 ranks: \(rate) tokens/s, MFU \(mfu), peak \(perCore) GFLOP/s per core")
        #expect(mfu > 0 && mfu <= 1, "MFU \(mfu)")
        // The JSON carries 9 significant digits.
        #expect(abs(peak - 2 * perCore) <= 1e-8 * peak)
        #expect(abs(mfu - rate * flops / (peak * 1e9)) <= 1e-7 * mfu)
    }
}
