/// Token embedding: each token's row of the table.
///
///     tokens  [tokenCount] (Int32 ids in 0..<vocabularySize)
///     table   [vocabularySize, hiddenSize]
///     output  [tokenCount, hiddenSize]
///
/// Token ids come from data: the loader checks them against `vocab_size`; here an id out of range
/// is a programmer error, caught in debug builds.
public enum Embedding {
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
        tokenCount: Int, vocabularySize: Int, hiddenSize: Int,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<tokenCount, minimumChunk: 16) { rows in
            for row in rows {
                let token = Int(tokens[row])
                precondition(token >= 0 && token < vocabularySize,
                             "token id \(token) at position \(row) is outside the vocabulary of \(vocabularySize)")
                (output + row * hiddenSize).update(from: table + token * hiddenSize, count: hiddenSize)
            }
        }
    }

    /// Scatter-adds each token's output gradient into its table row:
    /// `tableGradient[tokens[t]] += outputGradient[t]`.
    ///
    /// A token can repeat, so threads split the hidden dimension, not the tokens: every row of
    /// the table gradient is then summed in token order whatever the thread count.
    public static func backward(
        tableGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, tokens: UnsafePointer<Int32>,
        tokenCount: Int, vocabularySize: Int, hiddenSize: Int,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<hiddenSize, minimumChunk: 64) { columns in
            for row in 0..<tokenCount {
                let token = Int(tokens[row])
                precondition(token >= 0 && token < vocabularySize,
                             "token id \(token) at position \(row) is outside the vocabulary of \(vocabularySize)")
                Vector.add(tableGradient + token * hiddenSize + columns.lowerBound,
                           outputGradient + row * hiddenSize + columns.lowerBound,
                           count: columns.count)
            }
        }
    }
}
