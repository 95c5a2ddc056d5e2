import Checkpoint
import Foundation
import Runtime
import Testing

/// Tiny Qwen2 (q/k/v biases) and Qwen3 (QK-norm, tied, head_dim 12 ≠ 40 / 4) models saved by
/// transformers (Tests/ModelTests/Fixtures/hf-qwen2, hf-qwen3; tools/golden/make_qwen_fixture.py)
/// go through `meshlm ckpt import-hf` and `export-hf` unchanged, and MeshLM's training forward
/// (`meshlm eval --logits`) and serving engine (`meshlm generate`, on one and two tensor-parallel
/// ranks) give transformers' logits, which `qwen_golden.h5` holds. A transformers
/// `LlamaForSequenceClassification` (the scalar head `score.weight`, 2 labels) does the same
/// round trip and scores as transformers does (`score_golden.h5`).
@Suite(.serialized) struct QwenModelTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelTests/Fixtures").path

    func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-qwen-\(getpid())-\(name)").path
    }

    /// Largest |a − b| over the largest |b|.
    func relativeDifference(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        let scale = b.map(abs).max() ?? 1
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? .infinity
    }

    /// `meshlm ckpt import-hf` of the Hugging Face directory `source` into `work/imported`, then
    /// `export-hf` to `work/exported`, expecting every tensor back bit for bit; returns the
    /// imported checkpoint and the exported `config.json`.
    func roundTrip(_ source: String, work: String, label: String) throws -> (imported: String, config: [String: Any]?) {
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let imported = work + "/imported", exported = work + "/exported"
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", source, "--output", imported])
        #expect(importing.status == 0, "\(importing.standardError)")
        let exporting = try Launcher.plain("meshlm", ["ckpt", "export-hf", imported, "--output", exported])
        #expect(exporting.status == 0, "\(exporting.standardError)")
        try expectSameTensors(source: source, exported: exported, family: label)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any]
        return (imported, config)
    }


    @Test(arguments: ["qwen2", "qwen3"])
    func importExportEvalAndEngineMatchTransformers(family: String) throws {
        let work = scratch(family)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // Import, export: every tensor bit for bit, the architecture named as transformers named it.
        let (imported, config) = try roundTrip(Self.fixtures + "/hf-" + family, work: work, label: family)
        #expect(config?["model_type"] as? String == family)
        #expect(config?["architectures"] as? [String] == [family == "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM"])

        // transformers' logits of the fixture's first row (13 tokens, positions 0…12).
        let golden = try HDF5File.open(Self.fixtures + "/qwen_golden.h5")
        let tokens = Array(try golden.read(Int32.self, dataset: family + "/input_ids").prefix(13))
        let vocabulary = try golden.shape(of: family + "/logits")[2]
        let expected = Array(try golden.read(Float.self, dataset: family + "/logits").prefix(13 * vocabulary))

        // The training forward, through meshlm eval over those tokens.
        let trainingLogits = try evalLogits(imported, tokens: tokens, work: work).1
        let evalDifference = relativeDifference(trainingLogits[...], expected[...])
        print("\(family): meshlm eval logits vs transformers, max relative difference \(evalDifference)")
        #expect(trainingLogits.count == expected.count && evalDifference <= 1e-5)

        // The engine: the logits of the first generated token follow the whole prompt.
        let lastRow = expected[12 * vocabulary..<13 * vocabulary]
        for ranks in [1, 2] {
            let engine = try engineLogits(imported, tokens: tokens, ranks: ranks, dump: work + "/engine-\(ranks).bin").1
            let engineDifference = relativeDifference(engine[...], lastRow)
            print("\(family): engine (tp \(ranks)) logits vs transformers, max relative difference \(engineDifference)")
            #expect(engine.count == vocabulary && engineDifference <= 1e-5, "tp \(ranks)")
        }
    }

    /// Import → export of a sequence-classification model keeps `score.weight` and the
    /// architecture; `meshlm eval --logits` gives transformers' scores at every position (the
    /// last one is what transformers pools); `generate` refuses it with the reason.
    @Test func scoreHeadModelRoundTripsAndScoresAsTransformers() throws {
        let work = scratch("score")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let (imported, config) = try roundTrip(Self.fixtures + "/hf-llama-score", work: work, label: "score")
        #expect(config?["architectures"] as? [String] == ["LlamaForSequenceClassification"])
        #expect((config?["id2label"] as? [String: Any])?.count == 2)

        let golden = try HDF5File.open(Self.fixtures + "/score_golden.h5")
        let tokens = try golden.read(Int32.self, dataset: "input_ids")
        let expected = try golden.read(Float.self, dataset: "scores")
        let pooled = try golden.read(Float.self, dataset: "pooled")
        #expect(Array(expected.suffix(2)) == pooled)
        let (evaluating, scores) = try evalLogits(imported, tokens: tokens, work: work)
        #expect(evaluating.standardOutput.contains("\"num_labels\":2"), "\(evaluating.standardOutput)")
        let difference = relativeDifference(scores[...], expected[...])
        print("score head: meshlm eval scores vs transformers, max relative difference \(difference)")
        #expect(scores.count == expected.count && difference <= 1e-5)

        let withoutLogits = try Launcher.plain("meshlm", ["eval", "--checkpoint", imported, "--tokens", work + "/tokens.bin", "--dtype", "int32"])
        #expect(withoutLogits.status != 0 && withoutLogits.standardError.contains("has no next-token loss"), "\(withoutLogits.standardError)")
        let generating = try Launcher.plain("meshlm", ["generate", "--checkpoint", imported, "--prompt-ids", "5,6"])
        #expect(generating.status != 0 && generating.standardError.contains("cannot generate text"), "\(generating.standardError)")
    }

    /// Every tensor of the source's safetensors comes back bit for bit, and nothing else.
    func expectSameTensors(source: String, exported: String, family: String) throws {
        let before = try SafetensorsFile(path: source + "/model.safetensors")
        var exportedTensors = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: exported) where file.hasSuffix(".safetensors") {
            let after = try SafetensorsFile(path: exported + "/" + file)
            for entry in after.entries {
                exportedTensors += 1
                #expect(try after.floats(of: entry.name) == before.floats(of: entry.name), "\(family): \(entry.name) changed")
            }
        }
        #expect(exportedTensors == before.entries.count, "\(family): \(exportedTensors) tensors exported of \(before.entries.count)")
    }
}
