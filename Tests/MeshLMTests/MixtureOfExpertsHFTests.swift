import Checkpoint
import Foundation
import TensorComparison
import Testing

/// Tiny Mixtral, Qwen2-MoE (shared expert) and Qwen3-MoE models made by transformers
/// (Tests/ModelTests/Fixtures/hf-mixtral, hf-qwen2-moe, hf-qwen3-moe, hf-qwen3-moe-fused; tools/golden/make_moe_fixture.py) go through `meshlm ckpt
/// import-hf` and `export-hf` unchanged — from the per-expert layout transformers saves and from
/// the fused layout it holds in memory — and `meshlm eval --logits` and the serving engine (on one
/// and two tensor-parallel ranks) give transformers' logits (`moe_golden.json`).
@Suite(.serialized) struct MixtureOfExpertsHFTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelTests/Fixtures").path

    func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-moe-hf-\(getpid())-\(name)").path
    }

    @Test(arguments: [("hf-mixtral", "mixtral", "hf-mixtral"), ("hf-qwen2-moe", "qwen2_moe", "hf-qwen2-moe"),
                      ("hf-qwen3-moe", "qwen3_moe", "hf-qwen3-moe"),
                      ("hf-qwen3-moe-fused", "qwen3_moe", "hf-qwen3-moe")])
    func importExportAndEvalMatchTransformers(directory: String, model: String, perExpert: String) throws {
        let source = Self.fixtures + "/" + directory
        let work = scratch(directory)
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/moe_golden.json")))
        guard let variant = (golden as? [String: Any])?[model] as? [String: Any], let ids = variant["input_ids"] as? [Int],
              let expected = (variant["logits"] as? [Double])?.map(Float.init) else {
            Issue.record("moe_golden.json has no \(model)")
            return
        }
        let imported = work + "/imported", exported = work + "/exported"
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", source, "--output", imported])
        #expect(importing.status == 0, "\(directory): \(importing.standardError)")

        // The training model's forward (forward only) against transformers' logits.
        let tokenFile = work + "/tokens.bin", logitsFile = work + "/logits.bin"
        try ids.map(Int32.init).withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: tokenFile))
        let evaluating = try Launcher.plain("meshlm", ["eval", "--checkpoint", imported, "--tokens", tokenFile, "--dtype", "int32",
                                                       "--seq-len", "\(ids.count)", "--logits", logitsFile])
        #expect(evaluating.status == 0, "\(directory): \(evaluating.standardError)")
        let logits = try Data(contentsOf: URL(fileURLWithPath: logitsFile)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let comparison = TensorDifference(logits, expected)
        print("\(directory): eval logits vs transformers: \(comparison)")
        #expect(logits.count == expected.count && comparison.relativeDifference <= 1e-5, "\(directory): \(comparison)")

        // The serving engine (one rank, and two tensor-parallel ranks each holding half of every
        // expert): the logits of the first generated token follow the whole prompt.
        let vocabulary = expected.count / ids.count
        let lastRow = Array(expected[(ids.count - 1) * vocabulary..<ids.count * vocabulary])
        for ranks in [1, 2] {
            let dump = work + "/engine-\(ranks).bin"
            let arguments = ["generate", "--checkpoint", imported, "--prompt-ids", ids.map(String.init).joined(separator: ","),
                             "--max-tokens", "1", "--threads", "1", "--dump-logits", dump]
            let generating = ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
            #expect(generating.status == 0, "\(directory) tp \(ranks): \(generating.standardError)")
            let engine = try Data(contentsOf: URL(fileURLWithPath: dump)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let engineComparison = TensorDifference(engine, lastRow)
            print("\(directory): engine (tp \(ranks)) logits vs transformers: \(engineComparison)")
            #expect(engine.count == vocabulary && engineComparison.relativeDifference <= 1e-5, "\(directory) tp \(ranks): \(engineComparison)")
        }

        // Exported in the per-expert layout transformers saves, bit for bit.
        let exporting = try Launcher.plain("meshlm", ["ckpt", "export-hf", imported, "--output", exported])
        #expect(exporting.status == 0, "\(directory): \(exporting.standardError)")
        let before = try SafetensorsFile(path: Self.fixtures + "/" + perExpert + "/model.safetensors")
        let after = try SafetensorsFile(path: exported + "/model.safetensors")
        #expect(Set(after.entries.map(\.name)) == Set(before.entries.map(\.name)), "\(directory): exported tensor names")
        for entry in after.entries where before.entries.contains(where: { $0.name == entry.name }) {
            #expect(try after.floats(of: entry.name) == before.floats(of: entry.name), "\(directory): \(entry.name) changed")
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == model)
        #expect((config?["num_local_experts"] ?? config?["num_experts"]) as? Int == 4)
    }

    /// A fused expert tensor whose shape does not fit config.json is refused by name.
    @Test func aFusedTensorOfTheWrongShapeIsRefused() throws {
        let work = scratch("bad-fused")
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work + "/model", withIntermediateDirectories: true)
        let source = Self.fixtures + "/hf-qwen3-moe-fused"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
        config["moe_intermediate_size"] = 20
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: work + "/model/config.json"))
        try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: work + "/model/model.safetensors")
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", work + "/model", "--output", work + "/out"])
        #expect(importing.status != 0)
        #expect(importing.standardError.contains("model.layers.1.mlp.experts.gate_up_proj has shape [4, 48, 40]"), "\(importing.standardError)")
    }
}
