import Foundation

/// How `Attention` cuts the sequence into tiles: query rows × key columns per tile product.
public struct AttentionTiling: Sendable, Equatable {
    public var queryTileSize: Int
    public var keyTileSize: Int

    /// 64 × 64: small enough that a score tile (16 KiB) and its operands stay in L1/L2, large
    /// enough for sgemm to run near peak, and only 1/8 of the causal work is wasted on the masked
    /// half of diagonal tiles at sequence length 512.
    public static let `default` = AttentionTiling(queryTileSize: 64, keyTileSize: 64)

    public init(queryTileSize: Int, keyTileSize: Int) {
        precondition(queryTileSize >= 1 && keyTileSize >= 1, "attention tiles need at least one row and column")
        self.queryTileSize = queryTileSize
        self.keyTileSize = keyTileSize
    }
}

/// Causal grouped-query attention, `softmax(q·kᵀ / √headDimension + causal mask) · v`, computed
/// flash-style: tile by tile with an online softmax, never holding a sequence × sequence matrix.
///
///     query, output  [batchSize, sequenceLength, headCount, headDimension]     (token-major, as
///     key, value     [batchSize, sequenceLength, kvHeadCount, headDimension]    projections write them)
///     logSumExp      [batchSize, headCount, sequenceLength]   saved for backward
///
/// Query head h reads key/value head h / (headCount / kvHeadCount). Tile products are sgemm calls
/// on strided views of the inputs (no copies); the softmax bookkeeping between them is vector code.
public enum Attention {
    public static func forward(
        output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
        query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>,
        batchSize: Int, sequenceLength: Int, headCount: Int, kvHeadCount: Int, headDimension: Int,
        tiling: AttentionTiling = .default, threads: KernelThreads = .single
    ) {
        let shape = Shape(batchSize, sequenceLength, headCount, kvHeadCount, headDimension)
        let queryTile = tiling.queryTileSize, keyTile = tiling.keyTileSize
        let queryTileCount = (sequenceLength + queryTile - 1) / queryTile
        // Work items are (batch, head, query tile): each writes only its own output rows and
        // log-sum-exps, so threads never share a write.
        threads.parallelFor(0..<batchSize * headCount * queryTileCount) { items in
            let scores = Scratch(count: queryTile * keyTile)
            let accumulator = Scratch(count: queryTile * headDimension)
            let rowMaximum = Scratch(count: queryTile)
            let rowSum = Scratch(count: queryTile)
            defer { [scores, accumulator, rowMaximum, rowSum].forEach { $0.free() } }
            for item in items {
                let batch = item / (headCount * queryTileCount)
                let head = item / queryTileCount % headCount
                let queryStart = item % queryTileCount * queryTile
                let rows = Swift.min(queryTile, sequenceLength - queryStart)
                let q = query + shape.queryOffset(batch, queryStart, head)
                let kvHead = head / shape.groupSize
                rowMaximum.pointer.update(repeating: -.infinity, count: rows)
                rowSum.pointer.update(repeating: 0, count: rows)
                accumulator.pointer.update(repeating: 0, count: rows * headDimension)
                // Keys after the tile's last query are masked for every row: stop there.
                var keyStart = 0
                while keyStart < queryStart + rows {
                    let columns = Swift.min(keyTile, queryStart + rows - keyStart)
                    let kvOffset = shape.kvOffset(batch, keyStart, kvHead)
                    BLAS.multiply(
                        output: scores.pointer, outputStride: keyTile,
                        a: q, aStride: shape.queryRowStride,
                        b: key + kvOffset, bStride: shape.kvRowStride, bTranspose: .transposed,
                        rowCount: rows, columnCount: columns, innerCount: headDimension,
                        alpha: shape.scale)
                    for row in 0..<rows {
                        let visible = Swift.min(columns, queryStart + row - keyStart + 1)
                        let p = scores.pointer + row * keyTile
                        if visible <= 0 {
                            p.update(repeating: 0, count: columns)
                            continue
                        }
                        (p + visible).update(repeating: -.infinity, count: columns - visible)
                        let oldMaximum = rowMaximum.pointer[row]
                        let newMaximum = Swift.max(oldMaximum, Vector.maximum(p, count: visible))
                        let tileSum = exponentiate(p, count: columns, shift: newMaximum)
                        let correction = Vector.exp(oldMaximum - newMaximum)
                        rowSum.pointer[row] = rowSum.pointer[row] * correction + tileSum
                        rowMaximum.pointer[row] = newMaximum
                        if correction != 1 {
                            scale(accumulator.pointer + row * headDimension, count: headDimension, by: correction)
                        }
                    }
                    BLAS.multiply(
                        output: accumulator.pointer,
                        a: scores.pointer, aStride: keyTile,
                        b: value + kvOffset, bStride: shape.kvRowStride,
                        rowCount: rows, columnCount: headDimension, innerCount: columns,
                        beta: 1)
                    keyStart += keyTile
                }
                let o = output + shape.queryOffset(batch, queryStart, head)
                let lse = logSumExp + shape.logSumExpOffset(batch, head, queryStart)
                for row in 0..<rows {
                    let sum = rowSum.pointer[row]
                    let target = o + row * shape.queryRowStride
                    target.update(from: accumulator.pointer + row * headDimension, count: headDimension)
                    scale(target, count: headDimension, by: 1 / sum)
                    lse[row] = rowMaximum.pointer[row] + log(sum)
                }
            }
        }
    }

    /// Accumulates the gradients of `forward` into `queryGradient`, `keyGradient` and
    /// `valueGradient` (shaped like their inputs), recomputing each score tile from q, k and the
    /// saved log-sum-exp (P = exp(S − lse)) instead of storing probabilities:
    ///
    ///     dV += Pᵀ·dO,   dP = dO·Vᵀ,   dS = P ∘ (dP − Δ),   Δ = rowsum(dO ∘ O)
    ///     dQ += dS·K / √d,   dK += dSᵀ·Q / √d
    ///
    /// Work items are (batch, KV head): an item owns its key/value gradients (summed over the
    /// query heads of the group) and its heads' query gradients, so threads never share a write.
    public static func backward(
        queryGradient: UnsafeMutablePointer<Float>, keyGradient: UnsafeMutablePointer<Float>,
        valueGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>,
        logSumExp: UnsafePointer<Float>, output: UnsafePointer<Float>,
        query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>,
        batchSize: Int, sequenceLength: Int, headCount: Int, kvHeadCount: Int, headDimension: Int,
        tiling: AttentionTiling = .default, threads: KernelThreads = .single
    ) {
        let shape = Shape(batchSize, sequenceLength, headCount, kvHeadCount, headDimension)
        let queryTile = tiling.queryTileSize, keyTile = tiling.keyTileSize
        let groupSize = shape.groupSize
        threads.parallelFor(0..<batchSize * kvHeadCount) { items in
            let probabilities = Scratch(count: queryTile * keyTile)
            let scoreGradient = Scratch(count: queryTile * keyTile)
            let delta = Scratch(count: groupSize * sequenceLength)
            defer { [probabilities, scoreGradient, delta].forEach { $0.free() } }
            for item in items {
                let batch = item / kvHeadCount, kvHead = item % kvHeadCount
                for member in 0..<groupSize {
                    let head = kvHead * groupSize + member
                    for position in 0..<sequenceLength {
                        let offset = shape.queryOffset(batch, position, head)
                        delta.pointer[member * sequenceLength + position] =
                            Vector.dot(outputGradient + offset, output + offset, count: headDimension)
                    }
                }
                var keyStart = 0
                while keyStart < sequenceLength {
                    let columns = Swift.min(keyTile, sequenceLength - keyStart)
                    let kvOffset = shape.kvOffset(batch, keyStart, kvHead)
                    for member in 0..<groupSize {
                        let head = kvHead * groupSize + member
                        // Query tiles wholly before this key tile see none of it.
                        var queryStart = keyStart / queryTile * queryTile
                        while queryStart < sequenceLength {
                            let rows = Swift.min(queryTile, sequenceLength - queryStart)
                            let queryOffset = shape.queryOffset(batch, queryStart, head)
                            let lse = logSumExp + shape.logSumExpOffset(batch, head, queryStart)
                            let rowDelta = delta.pointer + member * sequenceLength + queryStart
                            BLAS.multiply(
                                output: probabilities.pointer, outputStride: keyTile,
                                a: query + queryOffset, aStride: shape.queryRowStride,
                                b: key + kvOffset, bStride: shape.kvRowStride, bTranspose: .transposed,
                                rowCount: rows, columnCount: columns, innerCount: headDimension,
                                alpha: shape.scale)
                            for row in 0..<rows {
                                let visible = Swift.max(0, Swift.min(columns, queryStart + row - keyStart + 1))
                                let p = probabilities.pointer + row * keyTile
                                (p + visible).update(repeating: -.infinity, count: columns - visible)
                                _ = exponentiate(p, count: columns, shift: lse[row])
                            }
                            BLAS.multiply(
                                output: valueGradient + kvOffset, outputStride: shape.kvRowStride,
                                a: probabilities.pointer, aStride: keyTile, aTranspose: .transposed,
                                b: outputGradient + queryOffset, bStride: shape.queryRowStride,
                                rowCount: columns, columnCount: headDimension, innerCount: rows,
                                beta: 1)
                            BLAS.multiply(
                                output: scoreGradient.pointer, outputStride: keyTile,
                                a: outputGradient + queryOffset, aStride: shape.queryRowStride,
                                b: value + kvOffset, bStride: shape.kvRowStride, bTranspose: .transposed,
                                rowCount: rows, columnCount: columns, innerCount: headDimension)
                            for row in 0..<rows {
                                softmaxGradient(scoreGradient.pointer + row * keyTile,
                                                probabilities: probabilities.pointer + row * keyTile,
                                                count: columns, delta: rowDelta[row])
                            }
                            BLAS.multiply(
                                output: queryGradient + queryOffset, outputStride: shape.queryRowStride,
                                a: scoreGradient.pointer, aStride: keyTile,
                                b: key + kvOffset, bStride: shape.kvRowStride,
                                rowCount: rows, columnCount: headDimension, innerCount: columns,
                                alpha: shape.scale, beta: 1)
                            BLAS.multiply(
                                output: keyGradient + kvOffset, outputStride: shape.kvRowStride,
                                a: scoreGradient.pointer, aStride: keyTile, aTranspose: .transposed,
                                b: query + queryOffset, bStride: shape.queryRowStride,
                                rowCount: columns, columnCount: headDimension, innerCount: rows,
                                alpha: shape.scale, beta: 1)
                            queryStart += queryTile
                        }
                    }
                    keyStart += keyTile
                }
            }
        }
    }

    /// Sizes and strides of the token-major layout.
    struct Shape {
        let sequenceLength, headCount, kvHeadCount, headDimension: Int
        let groupSize: Int
        let queryRowStride: Int
        let kvRowStride: Int
        let scale: Float

        init(_ batchSize: Int, _ sequenceLength: Int, _ headCount: Int, _ kvHeadCount: Int, _ headDimension: Int) {
            precondition(batchSize >= 0 && sequenceLength >= 0 && headDimension >= 1, "bad attention sizes")
            precondition(kvHeadCount >= 1 && headCount % kvHeadCount == 0,
                         "kvHeadCount \(kvHeadCount) must divide headCount \(headCount)")
            self.sequenceLength = sequenceLength
            self.headCount = headCount
            self.kvHeadCount = kvHeadCount
            self.headDimension = headDimension
            groupSize = headCount / kvHeadCount
            queryRowStride = headCount * headDimension
            kvRowStride = kvHeadCount * headDimension
            scale = 1 / Float(headDimension).squareRoot()
        }

        @inline(__always)
        func queryOffset(_ batch: Int, _ position: Int, _ head: Int) -> Int {
            (batch * sequenceLength + position) * queryRowStride + head * headDimension
        }

        @inline(__always)
        func kvOffset(_ batch: Int, _ position: Int, _ kvHead: Int) -> Int {
            (batch * sequenceLength + position) * kvRowStride + kvHead * headDimension
        }

        @inline(__always)
        func logSumExpOffset(_ batch: Int, _ head: Int, _ position: Int) -> Int {
            (batch * headCount + head) * sequenceLength + position
        }
    }

    /// A per-thread work buffer, 64-byte aligned.
    struct Scratch {
        let pointer: UnsafeMutablePointer<Float>

        init(count: Int) {
            pointer = UnsafeMutableRawPointer.allocate(
                byteCount: Swift.max(count, 1) * MemoryLayout<Float>.stride, alignment: Tensor.alignment)
                .bindMemory(to: Float.self, capacity: Swift.max(count, 1))
        }

        func free() {
            UnsafeMutableRawPointer(pointer).deallocate()
        }
    }

    /// `p[i] = exp(p[i] − shift)` in place; returns the sum.
    @inline(__always)
    static func exponentiate(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        let shiftLanes = Vector.Lanes(repeating: shift)
        var lanes = Vector.Lanes()
        var index = 0
        while index + Vector.width <= count {
            let e = Vector.exp(Vector.load(p + index) - shiftLanes)
            Vector.store(e, p + index)
            lanes += e
            index += Vector.width
        }
        var sum = Vector.horizontalSum(lanes)
        while index < count {
            let e = Vector.exp(p[index] - shift)
            p[index] = e
            sum += e
            index += 1
        }
        return sum
    }

    /// `p[i] *= factor`.
    @inline(__always)
    static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        var index = 0
        while index + Vector.width <= count {
            Vector.store(Vector.load(p + index) * factor, p + index)
            index += Vector.width
        }
        while index < count {
            p[index] *= factor
            index += 1
        }
    }

    /// `gradient[i] = probabilities[i] · (gradient[i] − delta)`: the softmax Jacobian applied to
    /// one row, turning dP into dS.
    @inline(__always)
    static func softmaxGradient(
        _ gradient: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, count: Int, delta: Float
    ) {
        var index = 0
        while index + Vector.width <= count {
            Vector.store(Vector.load(probabilities + index) * (Vector.load(gradient + index) - delta),
                         gradient + index)
            index += Vector.width
        }
        while index < count {
            gradient[index] = probabilities[index] * (gradient[index] - delta)
            index += 1
        }
    }
}
