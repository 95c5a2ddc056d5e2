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

    @Test func stagesBalanceTheLayersAgainstTheHead() throws {
        // A small vocabulary: the head costs little, the layers split evenly.
        var small = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 8,
                                numAttentionHeads: 4, numKeyValueHeads: 2)
        #expect(ModelSplit.layerRanges(small, sequenceLength: 64, stageCount: 4) == [0..<2, 2..<4, 4..<6, 6..<8])
        small.numHiddenLayers = 3
        #expect(ModelSplit.layerRanges(small, sequenceLength: 64, stageCount: 3) == [0..<1, 1..<2, 2..<3])
        // The 124M model: lm_head (768 × 32000) costs about 3.5 layers, so the last stage holds 4 of 12.
        let path = repositoryRoot.appendingPathComponent("configs/model/124m.yaml").path
        let peer = try ConfigLoader.load(LlamaConfig.self, path: path)
        #expect(ModelSplit.layerRanges(peer, sequenceLength: 512, stageCount: 2) == [0..<8, 8..<12])
        // Four virtual stages (pp 2 × 2 chunks): chunk 0 of stage 0 holds the embedding, chunk 1 of
        // stage 1 the head, every layer exactly once.
        let parts = (0..<2).map { ModelSplit.parts(peer, sequenceLength: 512, stage: $0, stageCount: 2, chunkCount: 2) }
        #expect(parts[0][0].hasEmbedding && parts[1][1].hasHead && !parts[0][1].hasHead)
        #expect(parts.flatMap { $0.flatMap { Array($0.layers) } }.sorted() == Array(0..<12))
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
