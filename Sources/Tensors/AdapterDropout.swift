/// LoRA's dropout (PEFT's `lora_dropout`: an `nn.Dropout` on the adapter's input, before
/// lora_A): each element kept with probability 1 − p and scaled by 1 / (1 − p), else zeroed.
///
/// The masks are a pure function of a key (the run's seed, the step, the layer and the
/// projection: `key(…)`) and each element's *global* coordinates — its token's index in the
/// step's global batch and its column in the whole projection's input — drawn by hashing
/// (`SplitMix64`), never from a running generator. So a resumed run draws the same masks, every
/// data-, tensor- or pipeline-parallel layout draws those of one rank, and backward (and
/// activation recomputation) regenerate them rather than save them.
///
///     input, output  [rowCount, columnCount]   row n is global token firstToken + n,
///                                              column j is global column firstColumn + j
public enum AdapterDropout {
    /// The key of one (step, layer, projection)'s masks.
    public static func key(seed: UInt64, step: Int, layer: Int, projection: Int) -> UInt64 {
        var generator = SplitMix64(seed: seed, stream: UInt64(step) << 24 | UInt64(layer) << 4 | UInt64(projection))
        return generator.next()
    }

    /// The seed of one token's row of masks.
    @inline(__always)
    static func rowSeed(key: UInt64, token: Int) -> UInt64 {
        var row = SplitMix64(seed: key, stream: UInt64(token))
        return row.next()
    }

    /// What element (token, column) of the input is multiplied by: 0 or 1 / (1 − probability).
    @inline(__always)
    public static func multiplier(key: UInt64, token: Int, column: Int, probability: Float) -> Float {
        multiplier(rowSeed: rowSeed(key: key, token: token), column: column, probability: probability)
    }

    @inline(__always)
    static func multiplier(rowSeed: UInt64, column: Int, probability: Float) -> Float {
        var element = SplitMix64(seed: rowSeed, stream: UInt64(column))
        return element.nextUniform() < probability ? 0 : 1 / (1 - probability)
    }

    /// output = input ⊙ mask / (1 − p)
    public static func forward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, key: UInt64, probability: Float,
        firstToken: Int, firstColumn: Int, rowCount: Int, columnCount: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount, minimumChunk: 4) { rows in
            for row in rows {
                let seed = rowSeed(key: key, token: firstToken + row)
                for column in 0..<columnCount {
                    let index = row * columnCount + column
                    output[index] = input[index] * multiplier(rowSeed: seed, column: firstColumn + column, probability: probability)
                }
            }
        }
    }

    /// inputGradient += outputGradient ⊙ mask / (1 − p)
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, key: UInt64, probability: Float,
        firstToken: Int, firstColumn: Int, rowCount: Int, columnCount: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount, minimumChunk: 4) { rows in
            for row in rows {
                let seed = rowSeed(key: key, token: firstToken + row)
                for column in 0..<columnCount {
                    let index = row * columnCount + column
                    inputGradient[index] += outputGradient[index] * multiplier(rowSeed: seed, column: firstColumn + column,
                                                                               probability: probability)
                }
            }
        }
    }
}
