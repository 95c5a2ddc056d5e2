import Foundation
import Tensors

/// Causal attention of new tokens against a paged KV cache: each row's query attends to its own
/// sequence's keys at positions 0...position (which include the rows of this step, already
/// stored), read block by block through the sequence's block table.
///
///     qkv     [rows, Q + 2K]   rotated queries first (Q = heads × headDim); keys/values follow
///     output  [rows, Q]        softmax(q·kᵀ / √headDim) · v per head
///
/// Grouped-query attention: query head h reads KV head h / (heads / kvHeads), as in transformers.
enum PagedAttention {
    static func forward(output: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, batch: ForwardBatch,
                        cache: KVBlockPool, layer: Int, headCount: Int, kvHeadCount: Int, headDimension: Int,
                        threads: KernelThreads) {
        let rows = batch.rowCount
        let queryWidth = headCount * headDimension
        let rowWidth = queryWidth + 2 * cache.slotWidth
        let group = headCount / kvHeadCount
        let scale = 1 / Float(headDimension).squareRoot()
        let longest = (batch.positions.max().map(Int.init) ?? 0) + 1
        let blockSize = cache.blockSize
        let width = cache.slotWidth
        let work = rows * headCount
        // Work items are (row, head); a chunk needs enough of them to pay for a dispatch.
        threads.parallelFor(0..<work, minimumChunk: Swift.max(1, 4096 / Swift.max(longest, 1))) { items in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: longest)
            defer { scores.deallocate() }
            for item in items {
                let row = item / headCount, head = item % headCount
                let kvHead = head / group
                let position = Int(batch.positions[row])
                let table = batch.blockTables[batch.sequenceIndices[row]]
                let query = qkv + row * rowWidth + head * headDimension
                var maximum = -Float.infinity
                for key in 0...position {
                    let slots = cache.keySlots(layer: layer, block: table[key / blockSize])
                    let score = dot(query, slots + (key % blockSize) * width + kvHead * headDimension, headDimension) * scale
                    scores[key] = score
                    maximum = Swift.max(maximum, score)
                }
                var sum: Float = 0
                for key in 0...position {
                    let weight = expf(scores[key] - maximum)
                    scores[key] = weight
                    sum += weight
                }
                let out = output + row * queryWidth + head * headDimension
                out.update(repeating: 0, count: headDimension)
                let inverse = 1 / sum
                for key in 0...position {
                    let slots = cache.valueSlots(layer: layer, block: table[key / blockSize])
                    accumulate(out, slots + (key % blockSize) * width + kvHead * headDimension, scores[key] * inverse,
                               headDimension)
                }
            }
        }
    }

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var lanes = SIMD16<Float>()
        var index = 0
        while index + 16 <= count {
            let x = UnsafeRawPointer(a + index).loadUnaligned(as: SIMD16<Float>.self)
            let y = UnsafeRawPointer(b + index).loadUnaligned(as: SIMD16<Float>.self)
            lanes.addProduct(x, y)
            index += 16
        }
        var total = lanes.sum()
        while index < count {
            total += a[index] * b[index]
            index += 1
        }
        return total
    }

    /// `output += weight · values`.
    @inline(__always)
    static func accumulate(_ output: UnsafeMutablePointer<Float>, _ values: UnsafePointer<Float>, _ weight: Float, _ count: Int) {
        var index = 0
        while index + 16 <= count {
            let y = UnsafeRawPointer(output + index).loadUnaligned(as: SIMD16<Float>.self)
            let x = UnsafeRawPointer(values + index).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(output + index).storeBytes(of: y.addingProduct(weight, x), as: SIMD16<Float>.self)
            index += 16
        }
        while index < count {
            output[index] += weight * values[index]
            index += 1
        }
    }
}
