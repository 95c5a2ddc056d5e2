import Tensors

extension LlamaModel {
    /// Fills a parameter arena (`layout.count` floats) with initial values:
    ///
    /// - norm weights: ones; biases: zeros;
    /// - LoRA: A uniform in ±1/√in (PEFT's Kaiming-uniform with a = √5), B zeros, so a fresh
    ///   adapter leaves the model as it was; DoRA's magnitude: the row norms of its projection's
    ///   initial W (regenerated here; a base loaded from a checkpoint sets them again from the
    ///   loaded W: `ParallelModel.loadParameters`);
    /// - matrices: N(0, 0.02²) (GPT-2 and transformers' `initializer_range`), except `o_proj` and
    ///   `down_proj`, the two projections that write into the residual stream, which get
    ///   N(0, (0.02 / √(2·num_hidden_layers))²) so the stream's variance does not grow with depth
    ///   (GPT-2's scaled initialization, as torchtitan does it).
    ///
    /// Each tensor draws from its own `SplitMix64` stream keyed by its name, so its values depend
    /// only on the seed and its name: not on the rank, the thread count, the layout's order or
    /// which other tensors exist (tied or not, pipeline stage or not).
    public static func initialize(_ parameters: UnsafeMutablePointer<Float>, layout: ParameterLayout,
                                  config: LlamaConfig, seed: UInt64) {
        for entry in layout.entries {
            initialize(parameters + entry.offset, entry: entry, config: config, seed: seed)
        }
    }

    /// Fills one tensor (`entry.count` floats at `destination`) as `initialize(_:layout:config:seed:)` does.
    public static func initialize(_ destination: UnsafeMutablePointer<Float>, entry: ParameterLayout.Entry,
                                  config: LlamaConfig, seed: UInt64) {
        if entry.role.isNorm || entry.role.isBias {
            destination.update(repeating: entry.role.isNorm ? 1 : 0, count: entry.count)
            return
        }
        switch entry.role {
        case .loraB:
            destination.update(repeating: 0, count: entry.count)
            return
        case .loraA:
            let bound = 1 / Float(entry.shape[1]).squareRoot()
            var generator = SplitMix64(seed: seed, stream: stream(forName: entry.name))
            for index in 0..<entry.count { destination[index] = bound * (2 * generator.nextUniform() - 1) }
            return
        case .loraMagnitude(let projection):
            let (output, input) = projection.shape(config)
            precondition(entry.count == output, "\(entry.name) holds \(entry.count) values for \(output) rows")
            let weight = UnsafeMutablePointer<Float>.allocate(capacity: output * input)
            defer { weight.deallocate() }
            initializeMatrix(weight, count: output * input, name: String(entry.name.dropLast(LoRAConfig.magnitudeSuffix.count)) + ".weight",
                             role: projection.role, config: config, seed: seed)
            destination.update(from: WeightDecomposedAdapter.rowNorms(weight, rowCount: output, columnCount: input), count: output)
            return
        default: break
        }
        initializeMatrix(destination, count: entry.count, name: entry.name, role: entry.role, config: config, seed: seed)
    }

    /// A matrix's (or embedding's) initial values: N(0, σ²) from the stream of its name.
    private static func initializeMatrix(_ destination: UnsafeMutablePointer<Float>, count: Int, name: String, role: TensorRole,
                                         config: LlamaConfig, seed: UInt64) {
        let standardDeviation: Float = role.writesResidual ? 0.02 / (2 * Float(config.numHiddenLayers)).squareRoot() : 0.02
        var generator = SplitMix64(seed: seed, stream: stream(forName: name))
        for index in 0..<count {
            destination[index] = standardDeviation * generator.nextNormal()
        }
    }

    /// 64-bit FNV-1a of the name's UTF-8 bytes: a stream number that is stable across runs,
    /// machines and Swift versions (unlike `Hasher`, which is seeded per process).
    static func stream(forName name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
