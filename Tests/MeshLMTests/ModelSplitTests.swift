import Model
import Parallel
import Runtime
import Testing

@Suite struct ModelSplitTests {
    let model = LlamaConfig(vocabSize: 1000, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 6,
                            numAttentionHeads: 8, numKeyValueHeads: 2)

    func message(_ dims: ParallelDims, _ model: LlamaConfig) -> String {
        do { try ModelSplit.validate(model, on: dims); return "ok" } catch { return "\(error)" }
    }

    @Test func headsLayersAndKVReplication() throws {
        #expect(message(try ParallelDims(worldSize: 4, tensorDegree: 4), model) == "ok")  // KV heads replicated
        #expect(message(try ParallelDims(worldSize: 2, tensorDegree: 2), model) == "ok")
        #expect(message(try ParallelDims(worldSize: 3, tensorDegree: 3), model) == "tensor parallel degree tp 3 must divide num_attention_heads 8")
        var sixKV = model
        sixKV.numAttentionHeads = 12
        sixKV.numKeyValueHeads = 6
        #expect(message(try ParallelDims(worldSize: 4, tensorDegree: 4), sixKV)
                == "tensor parallel degree tp 4 must divide num_key_value_heads 6 or be a multiple of it (KV heads are then replicated)")
        #expect(message(try ParallelDims(worldSize: 8, pipelineDegree: 8), model) == "num_hidden_layers 6 is fewer than the pipeline stages pp 8")
    }

    @Test func unevenStagesGiveTheExtraLayersToMiddleStages() {
        #expect(ModelSplit.layerRanges(layerCount: 8, stageCount: 4) == [0..<2, 2..<4, 4..<6, 6..<8])
        #expect(ModelSplit.layerRanges(layerCount: 10, stageCount: 4) == [0..<2, 2..<5, 5..<8, 8..<10])
        #expect(ModelSplit.layerRanges(layerCount: 7, stageCount: 3) == [0..<2, 2..<5, 5..<7])
    }

    @Test func shippedModelConfigsLoadAndCountParameters() throws {
        for name in ["tiny", "10m", "124m"] {
            let path = repositoryRoot.appendingPathComponent("configs/model/\(name).yaml").path
            let config = try ConfigLoader.load(LlamaConfig.self, path: path)
            #expect(config.headDim * config.numAttentionHeads == config.hiddenSize)
            print("\(name): \(config.parameterCount) parameters")
        }
        let gpt2Class = try ConfigLoader.load(LlamaConfig.self, path: repositoryRoot.appendingPathComponent("configs/model/124m.yaml").path)
        #expect((100_000_000...140_000_000).contains(gpt2Class.parameterCount))
    }
}
