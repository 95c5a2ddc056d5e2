import Checkpoint
import Foundation
import Model
import Serving
import Tensors
import TensorComparison
import Testing

@Suite struct InferenceModelTests {
    init() { useSingleThreadedBLAS() }

    /// Prefill in two chunks (every row's logits), then single-token decode steps: each step's
    /// logits equal the training model's forward over the whole sequence so far — for each
    /// family's layer (qwen2's biases, qwen3's QK-norm), which both run from `DecoderLayer`.
    @Test(arguments: [(false, 1, LlamaConfig.ModelType.llama), (true, 1, .llama), (false, 2, .llama),
                      (false, 2, .qwen2), (true, 1, .qwen3)])
    func logitsMatchTrainingModel(tied: Bool, threads: Int, modelType: LlamaConfig.ModelType) {
        let config = servingConfig(tied: tied, modelType: modelType)
        let weights = servingWeights(config)
        let model = InferenceModel(weights: weights, maximumRows: 16, threads: KernelThreads(count: threads))
        let cache = KVBlockPool(blockCount: 8, blockSize: 4, layerCount: config.numHiddenLayers,
                                slotWidth: config.numKeyValueHeads * config.headDim)
        let vocabulary = config.vocabSize
        // Blocks deliberately out of order: the table, not the block index, gives positions.
        let table = [5, 2, 7, 0, 3]
        var tokens = randomTokens(11, vocabulary: vocabulary, seed: 9)
        let reference = referenceLogits(weights, tokens)
        var computed = 0
        for chunk in [6, 5] {
            var batch = ForwardBatch()
            batch.blockTables = [table]
            for position in computed..<computed + chunk {
                batch.tokens.append(tokens[position])
                batch.positions.append(Int32(position))
                batch.sequenceIndices.append(0)
                batch.logitRows.append(position - computed)
            }
            let logits = Array(model.forward(batch, cache: cache))
            let expected = reference[computed * vocabulary..<(computed + chunk) * vocabulary]
            let difference = relativeDifference(logits[...], expected)
            #expect(difference <= 1e-5, "prefill chunk at \(computed): relative difference \(difference)")
            computed += chunk
        }
        var generator = SplitMix64(seed: 4)
        for _ in 0..<6 {
            let token = Int32(generator.next() % UInt64(vocabulary))
            tokens.append(token)
            var batch = ForwardBatch()
            batch.blockTables = [table]
            batch.tokens = [token]
            batch.positions = [Int32(tokens.count - 1)]
            batch.sequenceIndices = [0]
            batch.logitRows = [0]
            let logits = Array(model.forward(batch, cache: cache))
            let full = referenceLogits(weights, tokens)
            let expected = full[(tokens.count - 1) * vocabulary..<tokens.count * vocabulary]
            let difference = relativeDifference(logits[...], expected)
            #expect(difference <= 1e-5, "decode at position \(tokens.count - 1): relative difference \(difference)")
        }
    }

    @Test func matrixVectorMatchesNaive() {
        var generator = SplitMix64(seed: 1)
        let (rows, columns) = (203, 77)
        let matrix = (0..<rows * columns).map { _ in generator.nextNormal() }
        let vector = (0..<columns).map { _ in generator.nextNormal() }
        var outputs: [[Float]] = []
        for threads in [1, 2, 3] {
            var output = [Float](repeating: 0, count: rows)
            output.withUnsafeMutableBufferPointer { out in
                MatrixVector.multiply(output: out.baseAddress!, matrix: matrix, vector: vector, rowCount: rows,
                                      columnCount: columns, threads: KernelThreads(count: threads))
            }
            for row in 0..<rows {
                var sum: Double = 0
                for column in 0..<columns { sum += Double(matrix[row * columns + column]) * Double(vector[column]) }
                #expect(abs(Double(output[row]) - sum) <= 1e-4 * max(1, abs(sum)))
            }
            outputs.append(output)
        }
        expectSameBits(outputs[1], outputs[0], "threads 2 vs 1")
        expectSameBits(outputs[2], outputs[0], "threads 3 vs 1")
    }
}

@Suite struct CheckpointLoadingTests {
    init() { useSingleThreadedBLAS() }

    @Test func loadsWhatWasSaved() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weights = servingWeights(servingConfig())
        let step = try writeCheckpoint(weights, directory: directory + "/checkpoints")
        for path in [step, directory + "/checkpoints", directory] {
            let loaded = try InferenceWeights.load(checkpoint: path)
            #expect(loaded.config == weights.config)
            expectSameBits(loaded.parameters.values, weights.parameters.values, "weights loaded from \(path)")
        }
        try FileManager.default.removeItem(atPath: step + "/model_config.json")
        #expect(throws: ServingError(.checkpoint, "\(step)/model_config.json is missing: the checkpoint has no model config (re-save it with a MeshLM that writes model_config.json, or import the model with `meshlm ckpt import-hf`)")) {
            try InferenceWeights.load(checkpoint: step)
        }
        #expect(throws: ServingError(.checkpoint, "no committed checkpoint at \(directory)/nothing: no such directory; give a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory")) {
            try InferenceWeights.load(checkpoint: directory + "/nothing")
        }
    }
}

@Suite struct SmallBatchLinearTests {
    @Test(arguments: [1, 2, 3, 8, 16])
    func matchesNaive(rows: Int) {
        var generator = SplitMix64(seed: UInt64(rows))
        let (inputSize, outputSize) = (77, 203)
        let weight = (0..<outputSize * inputSize).map { _ in generator.nextNormal() }
        let input = (0..<rows * inputSize).map { _ in generator.nextNormal() }
        for threads in [1, 2] {
            var output = [Float](repeating: .nan, count: rows * outputSize)
            output.withUnsafeMutableBufferPointer { out in
                SmallBatchLinear.multiply(output: out.baseAddress!, input: input, weight: weight, rowCount: rows,
                                          inputSize: inputSize, outputSize: outputSize, threads: KernelThreads(count: threads))
            }
            // Batch invariance: each row equals the same row multiplied alone, bit for bit.
            for row in 0..<rows {
                var alone = [Float](repeating: .nan, count: outputSize)
                alone.withUnsafeMutableBufferPointer { out in
                    input.withUnsafeBufferPointer { rowsIn in
                        SmallBatchLinear.multiply(output: out.baseAddress!, input: rowsIn.baseAddress! + row * inputSize, weight: weight,
                                                  rowCount: 1, inputSize: inputSize, outputSize: outputSize,
                                                  threads: KernelThreads(count: threads))
                    }
                }
                expectSameBits(output[row * outputSize..<(row + 1) * outputSize], alone, "row \(row) of \(rows)")
            }
            for row in 0..<rows {
                for column in 0..<outputSize {
                    var sum: Double = 0
                    for k in 0..<inputSize { sum += Double(input[row * inputSize + k]) * Double(weight[column * inputSize + k]) }
                    #expect(abs(Double(output[row * outputSize + column]) - sum) <= 1e-4 * max(1, abs(sum)))
                }
            }
        }
    }
}

/// A LoRA run's checkpoint (base, adapters and `adapter_config.json`) is served with its
/// adapters merged: the engine's logits equal the training model's unmerged forward with the
/// adapters; without `adapter_config.json` it is refused rather than served as the base.
@Suite struct LoRAServingTests {
    init() { useSingleThreadedBLAS() }

    /// With DoRA the merge is W ← m / ‖W + s·B·A‖_row ⊙ (W + s·B·A) (magnitudes here away from
    /// the row norms, so the scale matters).
    @Test(arguments: [false, true])
    func engineServesTheMergedAdapters(dora: Bool) throws {
        let config = servingConfig(modelType: .qwen2)
        let lora = LoRAConfig(rank: 4, alpha: 8, targets: [.query, .value, .output, .down], weightDecomposed: dora)
        let base = servingWeights(config)
        let layout = ParameterLayout(config: config, lora: lora)
        let trained = ArenaParameters(layout: layout)
        var generator = SplitMix64(seed: 17)
        for entry in layout.entries {
            let destination = trained.parameters.pointer + entry.offset
            if let source = base.layout.entry(named: entry.name) {
                destination.update(from: base.parameters.pointer + source.offset, count: entry.count)
            } else if entry.name.hasSuffix(LoRAConfig.magnitudeSuffix),
                      let weight = base.layout.entry(named: String(entry.name.dropLast(LoRAConfig.magnitudeSuffix.count)) + ".weight") {
                let norms = WeightDecomposedAdapter.rowNorms(base.parameters.pointer + weight.offset, rowCount: weight.shape[0],
                                                             columnCount: weight.shape[1])
                for index in 0..<entry.count { destination[index] = norms[index] * (1 + 0.3 * generator.nextNormal()) }
            } else {
                for index in 0..<entry.count { destination[index] = 0.2 * generator.nextNormal() }
            }
        }
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let adapterConfig = try JSONSerialization.data(withJSONObject: [
            "peft_type": "LORA", "r": 4, "lora_alpha": 8.0, "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"],
            "use_rslora": false, "use_dora": dora,
        ])
        let declared = Dictionary(uniqueKeysWithValues: layout.entries.map { ($0.name, $0.shape) })
        func write(adapterConfig: Data?) throws -> String {
            var extras = ["model_config.json": try JSONEncoder().encode(config)]
            extras["adapter_config.json"] = adapterConfig
            return try CheckpointWriter.writeOffline(directory: directory + (adapterConfig == nil ? "/bare" : "/run"), step: 1, ranks: 1,
                                                     declared: declared, metadata: Data("{}".utf8), extraFiles: extras) { _ in
                layout.entries.map { entry in
                    CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count,
                                          values: Array(UnsafeBufferPointer(start: trained.parameters.pointer + entry.offset, count: entry.count)))
                }
            }
        }
        let served = try InferenceWeights.load(checkpoint: try write(adapterConfig: adapterConfig))
        let tokens = randomTokens(9, vocabulary: config.vocabSize, seed: 5)
        let training = LlamaModel(config: config, microBatchSize: 1, sequenceLength: tokens.count, lora: lora)
        let expected = training.logits(tokens: tokens, positions: (0..<Int32(tokens.count)).map { $0 }, parameters: trained)
        let baseLogits = referenceLogits(base, tokens)
        let model = InferenceModel(weights: served, maximumRows: 16)
        let (batch, cache) = promptPrefill(tokens, config: config)
        let logits = Array(model.forward(batch, cache: cache))
        let difference = relativeDifference(logits[...], expected[...])
        print("\(dora ? "DoRA" : "LoRA") served merged: engine vs training forward with adapters, max relative difference \(difference)")
        #expect(difference <= 1e-5)
        #expect(relativeDifference(baseLogits[...], expected[...]) > 1e-2, "the adapters change the model")

        #expect { _ = try InferenceWeights.load(checkpoint: try write(adapterConfig: nil)) } throws: {
            "\($0)".contains("holds LoRA adapters") && "\($0)".contains("no adapter_config.json")
        }
    }
}
