import Checkpoint
import Foundation
import Model
import Serving
import Tensors
import Testing
import Training

/// Writes a LoRA run's checkpoint over `base`: the base tensors, random adapters of `lora`
/// (large enough to change the greedy tokens) and `adapter_config.json`; returns the step
/// directory.
func writeLoRACheckpoint(base: InferenceWeights, lora: LoRAConfig, seed: UInt64, directory: String) throws -> String {
    let layout = ParameterLayout(config: base.config, lora: lora)
    var generator = SplitMix64(seed: seed)
    var values: [String: [Float]] = [:]
    for entry in layout.entries {
        if let source = base.layout.entry(named: entry.name) {
            values[entry.name] = Array(UnsafeBufferPointer(start: base.parameters.pointer + source.offset, count: source.count))
        } else {
            values[entry.name] = (0..<entry.count).map { _ in 0.3 * generator.nextNormal() }
        }
    }
    let declared = Dictionary(uniqueKeysWithValues: layout.entries.map { ($0.name, $0.shape) })
    let extras = ["model_config.json": try JSONEncoder().encode(base.config), "adapter_config.json": try JSONEncoder().encode(lora)]
    return try CheckpointWriter.writeOffline(directory: directory, step: 1, ranks: 1, declared: declared, metadata: Data("{}".utf8),
                                             extraFiles: extras) { _ in
        layout.entries.map { entry in
            CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count, values: values[entry.name]!)
        }
    }
}

/// A PEFT adapter directory opened as `meshlm serve --lora` opens one (LoRAModuleOptions).
func servedPEFTAdapter(name: String, directory: String, base config: LlamaConfig) throws -> ServedAdapter {
    let source = try PeftAdapter.open(directory, model: config)
    let shapes = Dictionary(uniqueKeysWithValues: PeftAdapter.tensors(source.lora, model: config).map { ($0.name, $0.shape) })
    return try ServedAdapter(name: name, root: directory, lora: source.lora, base: config, source: directory) { tensor in
        guard let shape = shapes[tensor] else { return nil }
        return (shape, try source.values(of: tensor))
    }
}

/// Greedy generation and every sampled row's logits, per request (in `requests` order).
final class RecordedRun {
    var logits: [Int: [[Float]]] = [:]
    var tokens: [Int: [Int32]] = [:]
    /// Steps after which the running batch held base sequences and sequences of every adapter.
    var mixedSteps = 0

    init(_ engine: Engine, _ requests: [(adapter: Int?, prompt: [Int32])], maxTokens: Int) throws {
        engine.logitsObserver = { [unowned self] id, row in logits[id, default: []].append(Array(row)) }
        var parameters = SamplingParameters.greedy(maxTokens: maxTokens)
        parameters.ignoreEOS = true
        let ids = try requests.map { try engine.add(prompt: $0.prompt, parameters: parameters, adapter: $0.adapter) }
        var generated: [Int: [Int32]] = [:]
        while engine.hasWork {
            for output in engine.step() { if let token = output.token { generated[output.requestID, default: []].append(token.token) } }
            let statistics = engine.statistics
            if !statistics.adapterRunning.isEmpty && statistics.adapterRunning.allSatisfy({ $0 > 0 })
                && statistics.running > statistics.adapterRunning.reduce(0, +) { mixedSteps += 1 }
        }
        // Ids are 0, 1, … in `requests` order.
        for (index, id) in ids.enumerated() { tokens[index] = generated[id] }
        logits = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($0.offset, logits[$0.element] ?? []) })
    }
}

/// Several LoRA adapters served unmerged over one base (`ServedAdapter`, `--lora`): each
/// sequence of a batch that mixes the base and adapters computes what serving its adapter merged
/// alone computes.
@Suite struct LoRAAdapterServingTests {
    init() { useSingleThreadedBLAS() }

    let config = servingConfig(modelType: .qwen2)
    let loraA = LoRAConfig(rank: 4, alpha: 8, targets: [.query, .value, .output, .down])
    let loraB = LoRAConfig(rank: 3, alpha: 6, targets: Projection.allCases, rankStabilized: true)

    /// Both paths (decode-sized runs in their own loop, longer runs through sgemm), on q's
    /// columns inside a fused row and rows of a wider input.
    @Test(arguments: [5, 23]) func adapterDeltaMatchesReference(rows: Int) {
        let (inputSize, outputSize, rank, outputStride, inputStride) = (37, 19, 3, 45, 41)
        var generator = SplitMix64(seed: 9)
        let input = (0..<rows * inputStride).map { _ in generator.nextNormal() }
        let a = (0..<rank * inputSize).map { _ in generator.nextNormal() }
        let bTransposed = (0..<rank * outputSize).map { _ in generator.nextNormal() }
        let start = (0..<rows * outputStride).map { _ in generator.nextNormal() }
        var output = start, expected = start
        var intermediate = [Float](repeating: 0, count: rows * rank)
        AdapterDelta.add(output: &output, outputStride: outputStride, intermediate: &intermediate, input: input, inputStride: inputStride,
                         a: a, bTransposed: bTransposed, scaling: 1.5, rowCount: rows, inputSize: inputSize, outputSize: outputSize, rank: rank)
        AdapterDelta.reference(output: &expected, outputStride: outputStride, input: input, inputStride: inputStride, a: a,
                               bTransposed: bTransposed, scaling: 1.5, rowCount: rows, inputSize: inputSize, outputSize: outputSize, rank: rank)
        #expect(relativeDifference(output[...], expected[...]) <= 1e-6)
        // Columns past each row's slice are untouched.
        #expect((0..<rows).allSatisfy { row in output[row * outputStride + outputSize..<(row + 1) * outputStride] == start[row * outputStride + outputSize..<(row + 1) * outputStride] })
    }

    /// (a) The base and two adapters interleaved in one engine, chunked prefill and decode in
    /// the same steps: every request's greedy tokens and every logits row equal (≤ 1e-5
    /// relative) those of an engine serving its adapter merged at load, alone.
    @Test func mixedBatchMatchesEachAdapterMergedAlone() throws {
        let base = servingWeights(config)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stepA = try writeLoRACheckpoint(base: base, lora: loraA, seed: 21, directory: directory + "/a")
        let stepB = try writeLoRACheckpoint(base: base, lora: loraB, seed: 22, directory: directory + "/b")
        let adapters = [try ServedAdapter.load(name: "a", checkpoint: stepA, base: config),
                        try ServedAdapter.load(name: "b", checkpoint: stepB, base: config)]
        let merged = [base, try InferenceWeights.load(checkpoint: stepA), try InferenceWeights.load(checkpoint: stepB)]
        let shared = randomTokens(9, vocabulary: config.vocabSize, seed: 40)
        let requests: [(adapter: Int?, prompt: [Int32])] = [
            (nil, randomTokens(5, vocabulary: config.vocabSize, seed: 41)), (0, shared), (1, shared),
            (0, randomTokens(13, vocabulary: config.vocabSize, seed: 42)), (nil, shared),
            (1, randomTokens(7, vocabulary: config.vocabSize, seed: 43)),
        ]
        // A budget of 12 tokens a step: prompts are prefilled in chunks beside decoding rows.
        let configuration = EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 8, tokenBudget: 12)
        let engine = Engine(weights: base, configuration: configuration, tokenizer: nil, adapters: adapters)
        let mixed = try RecordedRun(engine, requests, maxTokens: 6)
        #expect(engine.statistics.adapterRequests == [2, 2])
        // Steps ran base rows and both adapters' in one batch.
        #expect(mixed.mixedSteps >= 3)
        var largest: Float = 0
        for (index, request) in requests.enumerated() {
            let alone = Engine(weights: merged[(request.adapter ?? -1) + 1], configuration: configuration, tokenizer: nil)
            let expected = try RecordedRun(alone, [(nil, request.prompt)], maxTokens: 6)
            #expect(mixed.tokens[index] == expected.tokens[0], "request \(index) (adapter \(request.adapter ?? -1))")
            let rows = try #require(mixed.logits[index]), expectedRows = try #require(expected.logits[0])
            #expect(rows.count == expectedRows.count)
            for (row, expectedRow) in zip(rows, expectedRows) { largest = max(largest, relativeDifference(row[...], expectedRow[...])) }
        }
        print("mixed batch (base + 2 adapters) vs each merged alone: max relative logits difference \(largest)")
        #expect(largest <= 1e-5)
        // The adapters matter: the same prompt gives other tokens under each.
        #expect(Set([mixed.tokens[1]!, mixed.tokens[2]!, mixed.tokens[4]!]).count == 3)
    }

    /// (b) The adapter exported to PEFT's layout (`ckpt export-hf`'s adapter directory) and
    /// served with --lora gives the merged checkpoint's logits; and PEFT's own, when a python
    /// with peft is at hand.
    @Test func peftAdapterDirectoryMatchesMergedPath() throws {
        let base = servingWeights(config)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let step = try writeLoRACheckpoint(base: base, lora: loraB, seed: 23, directory: directory + "/run")
        let reader = try CheckpointReader(stepDirectory: step)
        try PeftAdapter.export(reader, lora: loraB, model: config, to: directory + "/peft")
        let adapter = try servedPEFTAdapter(name: "peft", directory: directory + "/peft", base: config)
        // 21 prompt rows in one step: the prefill takes `AdapterDelta`'s sgemm path.
        let prompt = randomTokens(21, vocabulary: config.vocabSize, seed: 44)
        let configuration = EngineConfiguration(blockCount: 32, blockSize: 4, maximumBatch: 4, tokenBudget: 64)
        let served = try RecordedRun(Engine(weights: base, configuration: configuration, tokenizer: nil, adapters: [adapter]),
                                     [(0, prompt)], maxTokens: 5)
        let merged = try RecordedRun(Engine(weights: try InferenceWeights.load(checkpoint: step), configuration: configuration, tokenizer: nil),
                                     [(nil, prompt)], maxTokens: 5)
        #expect(served.tokens[0] == merged.tokens[0])
        let largest = zip(served.logits[0] ?? [], merged.logits[0] ?? []).map { relativeDifference($0[...], $1[...]) }.max() ?? 1
        print("PEFT adapter served unmerged vs merged checkpoint: max relative logits difference \(largest)")
        #expect(largest <= 1e-5 && served.logits[0]?.count == 5)
    }

    @Test(.enabled(if: servingPeftPython != nil,
                   "no python with peft, transformers and torch at /tmp/golden-venv/bin/python or MESHLM_PEFT_PYTHON (tools/golden/README.md)"))
    func peftAdapterMatchesPEFT() throws {
        let python = try #require(servingPeftPython)
        let base = servingWeights(config)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let step = try writeLoRACheckpoint(base: base, lora: loraB, seed: 23, directory: directory + "/run")
        _ = try HuggingFaceExport.export(try CheckpointReader(stepDirectory: step), to: directory + "/hf")
        let adapter = try servedPEFTAdapter(name: "peft", directory: directory + "/hf/adapter", base: config)
        let prompt = randomTokens(11, vocabulary: config.vocabSize, seed: 44)
        let model = InferenceModel(weights: base, maximumRows: 16, adapters: [adapter])
        var (batch, cache) = promptPrefill(prompt, config: config)
        batch.adapterRuns = [AdapterRun(adapter: 0, rows: 0..<prompt.count)]
        let logits = Array(model.forward(batch, cache: cache))
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root = root.deletingLastPathComponent() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [root.appendingPathComponent("tools/peft-adapter-logits.py").path, "--base", directory + "/hf",
                             "--adapter", directory + "/hf/adapter", "--tokens", prompt.map(String.init).joined(separator: ","),
                             "--output", directory + "/peft.bin"]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/peft.bin"))
        let expected = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let difference = relativeDifference(logits[...], expected[...])
        print("PEFT adapter served unmerged vs PEFT: max relative logits difference \(difference)")
        #expect(difference <= 1e-5)
    }

    /// (d) The prefix cache never hands one adapter's blocks to another (or to the base): the
    /// same prompt shares blocks only under the same adapter.
    @Test func prefixCacheKeepsAdaptersApart() throws {
        let base = servingWeights(config)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let adapters = [try ServedAdapter.load(name: "a", checkpoint: try writeLoRACheckpoint(base: base, lora: loraA, seed: 21, directory: directory + "/a"), base: config),
                        try ServedAdapter.load(name: "b", checkpoint: try writeLoRACheckpoint(base: base, lora: loraB, seed: 22, directory: directory + "/b"), base: config)]
        let engine = Engine(weights: base, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 4, tokenBudget: 64),
                            tokenizer: nil, adapters: adapters)
        let prompt = randomTokens(13, vocabulary: config.vocabSize, seed: 45)
        func run(_ adapter: Int?) throws -> (tokens: [Int32], shared: Int) {
            let before = engine.statistics.sharedBlocks
            let recorded = try RecordedRun(engine, [(adapter, prompt)], maxTokens: 3)
            return (recorded.tokens[0] ?? [], engine.statistics.sharedBlocks - before)
        }
        let first = try run(0)
        #expect(first.shared == 0)
        #expect(try run(1).shared == 0, "adapter b must not reuse adapter a's blocks")
        #expect(try run(nil).shared == 0, "the base must not reuse an adapter's blocks")
        let again = try run(0)
        #expect(again.shared == 3, "the same adapter reuses its 3 full prompt blocks")
        #expect(again.tokens == first.tokens)
    }

    /// Adapters that cannot be served unmerged or do not fit the base are refused by name.
    @Test func refusesAdaptersThatDoNotFit() throws {
        let base = servingWeights(config)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let dora = try writeLoRACheckpoint(base: base, lora: LoRAConfig(rank: 2, alpha: 4, targets: [.query], weightDecomposed: true),
                                           seed: 1, directory: directory + "/dora")
        #expect { _ = try ServedAdapter.load(name: "d", checkpoint: dora, base: config) } throws: {
            "\($0)" == "adapter d (\(dora)) is a DoRA adapter (use_dora): its magnitudes rescale whole rows of the base weights, which a batch shared with other adapters cannot do; merge it with `meshlm ckpt merge-lora` and serve the merged checkpoint with --checkpoint"
        }
        var saving = LoRAConfig(rank: 2, alpha: 4, targets: [.query])
        saving.modulesToSave = ["lm_head"]
        let saved = try writeLoRACheckpoint(base: base, lora: saving, seed: 1, directory: directory + "/saved")
        #expect { _ = try ServedAdapter.load(name: "s", checkpoint: saved, base: config) } throws: {
            "\($0)".contains("trains whole modules besides its adapters (modules_to_save [\"lm_head\"])")
        }
        let wider = servingWeights(LlamaConfig(vocabSize: 300, hiddenSize: 48, intermediateSize: 72, numHiddenLayers: 2, numAttentionHeads: 4,
                                               numKeyValueHeads: 2, maxPositionEmbeddings: 128, modelType: .qwen2))
        let other = try writeLoRACheckpoint(base: wider, lora: loraA, seed: 1, directory: directory + "/other")
        #expect { _ = try ServedAdapter.load(name: "o", checkpoint: other, base: config) } throws: {
            "\($0)" == "adapter o was trained on a model with hidden_size 48 (\(other)/model_config.json) but the served base has hidden_size 40: an adapter fits only the base it was trained on"
        }
        let plain = try writeCheckpoint(base, directory: directory + "/plain")
        #expect { _ = try ServedAdapter.load(name: "p", checkpoint: plain, base: config) } throws: {
            "\($0)" == "adapter p: \(plain)/adapter_config.json is missing: \(plain) is not a LoRA checkpoint (a MeshLM LoRA run's checkpoint or a PEFT adapter directory holds adapter_config.json)"
        }
    }
}

/// The python of /tmp/golden-venv, or MESHLM_PEFT_PYTHON, when it has peft, transformers and torch.
let servingPeftPython: String? = {
    let python = ProcessInfo.processInfo.environment["MESHLM_PEFT_PYTHON"] ?? "/tmp/golden-venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python) else { return nil }
    let probe = Process()
    probe.executableURL = URL(fileURLWithPath: python)
    probe.arguments = ["-c", "import peft, transformers, torch"]
    probe.standardError = FileHandle.nullDevice
    guard (try? probe.run()) != nil else { return nil }
    probe.waitUntilExit()
    return probe.terminationStatus == 0 ? python : nil
}()
