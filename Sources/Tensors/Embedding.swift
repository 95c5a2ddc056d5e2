/// Token embedding: each token's row of the table.
///
///     tokens  [tokenCount] (Int32 ids in 0..<vocabularySize)
///     table   [vocabularySize, hiddenSize]
///     output  [tokenCount, hiddenSize]
///
/// Token ids come from data: the loader checks them against `vocab_size`; here an id out of range
/// is a programmer error, caught in debug builds. With `vocabularyStart` the table is a slice of
/// the vocabulary (rows `vocabularyStart ..< vocabularyStart + vocabularySize`, tensor parallel):
/// tokens outside it get zero rows forward and add nothing backward.
public enum Embedding {
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
        tokenCount: Int, vocabularySize: Int, hiddenSize: Int, vocabularyStart: Int? = nil,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<tokenCount, minimumChunk: 16) { rows in
            for row in rows {
                guard let token = tableRow(tokens[row], at: row, vocabularySize: vocabularySize, start: vocabularyStart) else {
                    (output + row * hiddenSize).update(repeating: 0, count: hiddenSize)
                    continue
                }
                (output + row * hiddenSize).update(from: table + token * hiddenSize, count: hiddenSize)
            }
        }
    }

    /// `forward` from a table stored as an `NF4Matrix` (QLoRA's frozen embeddings): each token's
    /// row dequantized into its output row.
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        tokens: UnsafePointer<Int32>, table: NF4Matrix,
        tokenCount: Int, vocabularySize: Int, hiddenSize: Int, vocabularyStart: Int? = nil,
        threads: KernelThreads = .single
    ) {
        precondition(table.rowCount == vocabularySize && table.columnCount == hiddenSize,
                     "an NF4 table of \(table.rowCount)×\(table.columnCount) given for \(vocabularySize)×\(hiddenSize)")
        threads.parallelFor(0..<tokenCount, minimumChunk: 16) { rows in
            for row in rows {
                guard let token = tableRow(tokens[row], at: row, vocabularySize: vocabularySize, start: vocabularyStart) else {
                    (output + row * hiddenSize).update(repeating: 0, count: hiddenSize)
                    continue
                }
                table.dequantize(rows: token..<token + 1, into: output + row * hiddenSize)
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
        tokenCount: Int, vocabularySize: Int, hiddenSize: Int, vocabularyStart: Int? = nil,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<hiddenSize, minimumChunk: 64) { columns in
            for row in 0..<tokenCount {
                guard let token = tableRow(tokens[row], at: row, vocabularySize: vocabularySize, start: vocabularyStart) else { continue }
                Vector.add(tableGradient + token * hiddenSize + columns.lowerBound,
                           outputGradient + row * hiddenSize + columns.lowerBound,
                           count: columns.count)
            }
        }
    }

    /// The table row of `token`: with the whole table (`start` nil) an id out of range is a
    /// programmer error; with a vocabulary slice starting at `start` (tensor parallel), ids
    /// outside it belong to another rank and have no row here.
    @inline(__always)
    private static func tableRow(_ token: Int32, at position: Int, vocabularySize: Int, start: Int?) -> Int? {
        guard let start else {
            precondition(token >= 0 && Int(token) < vocabularySize,
                         "token id \(token) at position \(position) is outside the vocabulary of \(vocabularySize)")
            return Int(token)
        }
        let row = Int(token) - start
        return row >= 0 && row < vocabularySize ? row : nil
    }
}
