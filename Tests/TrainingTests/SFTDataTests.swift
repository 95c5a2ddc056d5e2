import DataPipeline
import Foundation
import Model
import TensorComparison
import Tensors
import Testing
import Training

/// SFT samples through a chat template into ids and loss masks, packing, and the packed loss.
@Suite struct SFTDataTests {
    let tokenizer = ByteTokenizer()

    func tokenization(_ options: SFTTokenization.Options = .init(), template: String = SFTTokenization.chatML) throws -> SFTTokenization {
        SFTTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: template), options: options)
    }

    let conversation = SFTSample(source: "x:1", content: .conversation([
        ChatTurn(.system, "Be brief."), ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "4"), ChatTurn(.user, "And 3+3?"), ChatTurn(.assistant, "6"),
    ]))

    @Test func assistantTurnsAndTheirEndOfTurnAreSupervised() throws {
        let sample = try tokenization().tokenize(conversation)
        #expect(tokenizer.decode(sample.ids) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n6<|im_end|>\n")
        #expect(tokenizer.supervisedText(sample) == "4<|im_end|>\n|6<|im_end|>\n")
        #expect(tokenizer.supervisedText(try tokenization(.init(maskHistory: true)).tokenize(conversation)) == "6<|im_end|>\n")
        #expect(try tokenization(.init(trainOnPrompt: true)).tokenize(conversation).supervised.allSatisfy { $0 })
        // Plain text: prompt masked, completion and EOS supervised; no BOS added.
        let text = try tokenization().tokenize(SFTSample(source: "x:2", content: .text(prompt: "Sky:", completion: " blue")))
        #expect(text.ids == tokenizer.encode("Sky: blue") + [tokenizer.eosId])
        #expect(text.supervised == [false, false, false, false] + [Bool](repeating: true, count: 6))
    }

    @Test func aTemplateThatRewritesEarlierTurnsIsRefused() throws {
        // Renders only the last message: earlier turns vanish once another follows.
        let last = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}"
        #expect(throws: DataError("x:1: the chat template renders the conversation before message 2 differently once that message follows, so the answer's tokens cannot be told from the prompt's")) {
            _ = try tokenization(template: last).tokenize(conversation)
        }
        let raising = "{{ raise_exception('no system messages') }}"
        #expect(throws: DataError("x:1: the chat template refused the conversation: no system messages")) {
            _ = try tokenization(template: raising).tokenize(conversation)
        }
    }

    func sample(_ length: Int, _ seed: Int) -> TokenizedSample {
        TokenizedSample(ids: (0..<length).map { Int32(($0 * 7 + seed * 3) % 50 + 3) },
                        supervised: (0..<length).map { $0 >= length / 2 })
    }

    @Test func packingIsBestFitDecreasingAndCountsWhatItCuts() throws {
        let samples = [5, 9, 3, 7, 2, 8, 4, 12, 1].enumerated().map { sample($1, $0) }
        let packed = SFTPackedRows(samples, sequenceLength: 10, truncation: .drop, paddingId: 0, packing: .bestFitDecreasing)
        // 12 is too long (dropped); 1 has no supervised token after position 0 (dropped).
        #expect(packed.droppedCount == 2 && packed.truncatedCount == 0)
        #expect(packed.rows.map { $0.map { packed.samples.length(of: $0) } } == [[9], [8, 2], [7, 3], [5, 4]])
        #expect(abs(packed.efficiency - 38.0 / 40) < 1e-12)
        let row = try packed.packedRow(1)
        #expect(row.positions == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1])
        let first = try packed.samples.sample(packed.rows[1][0])
        #expect(row.targets[7] == -100 && row.targets[9] == -100 && row.targets[3] == first.ids[4])
        let cut = SFTPackedRows(samples, sequenceLength: 10, truncation: .keepEnd, paddingId: 0)
        #expect(cut.truncatedCount == 1 && cut.droppedCount == 1)
        #expect(try (0..<cut.samples.sampleCount).contains { try cut.samples.sample($0).ids == Array(sample(12, 7).ids.suffix(10)) })
    }

    /// A packed row's loss sum and gradients equal those of its samples run one by one, with
    /// document masking (each sample attends only to itself and starts at position 0).
    @Test func packedRowsGiveTheUnpackedLossAndGradients() throws {
        BLASLibrary.threadCount = 1
        let config = LlamaConfig(vocabSize: 61, hiddenSize: 24, intermediateSize: 40, numHiddenLayers: 2, numAttentionHeads: 4,
                                 numKeyValueHeads: 2, maxPositionEmbeddings: 64)
        let samples = [6, 9, 4, 5].enumerated().map { sample($1, $0) }
        let packed = SFTPackedRows(samples, sequenceLength: 12, truncation: .drop, paddingId: 0)
        let layout = ParameterLayout(config: config)
        let packedParameters = ArenaParameters(layout: layout), aloneParameters = ArenaParameters(layout: layout)
        LlamaModel.initialize(packedParameters.parameters.pointer, layout: layout, config: config, seed: 3)
        aloneParameters.parameters.pointer.update(from: packedParameters.parameters.pointer, count: layout.count)
        var packedLoss = 0.0, aloneLoss = 0.0
        for index in packed.rows.indices {
            let row = try packed.packedRow(index)
            let model = LlamaModel(config: config, microBatchSize: 1, sequenceLength: 12, documentMasking: true)
            packedLoss += model.forward(tokens: row.tokens, targets: row.targets, positions: row.positions, parameters: packedParameters).lossSum
            model.backward(lossScale: 1, parameters: packedParameters)
        }
        for index in 0..<packed.samples.sampleCount {
            let sample = try packed.samples.sample(index)
            let alone = try SFTPackedRows([sample], sequenceLength: sample.ids.count, truncation: .drop, paddingId: 0).packedRow(0)
            let model = LlamaModel(config: config, microBatchSize: 1, sequenceLength: sample.ids.count)
            aloneLoss += model.forward(tokens: alone.tokens, targets: alone.targets, positions: alone.positions, parameters: aloneParameters).lossSum
            model.backward(lossScale: 1, parameters: aloneParameters)
        }
        print("packed vs unpacked: loss \(packedLoss) vs \(aloneLoss), \(packed.rows.count) rows for \(packed.samples.sampleCount) samples")
        #expect(abs(packedLoss - aloneLoss) / aloneLoss < 1e-6)
        _ = expectClose(packedParameters.gradients.buffer, aloneParameters.gradients.buffer, relativeTolerance: 1e-5, "gradients")
    }
}
