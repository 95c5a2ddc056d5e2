import CSupport
import Tensors

/// `output = input · weightᵀ` for a few rows (decode batches): `[rows, out]` from `[rows, in]`
/// and `[out, in]`, each weight row read from memory once for all input rows.
///
/// Decode at small batch is bound by streaming the weights; sgemm packs its whole B operand
/// (the weights) first, which here triples the traffic. This kernel takes 4 weight rows at a
/// time (12 KB at in = 768, kept in L1) against the input rows two at a time: 8 accumulators,
/// 6 loads per 8 fused multiply-adds. Threads split the output columns. The passes over those 4
/// rows (from L1) would leave memory idle, so the next 4 rows are prefetched during them, spread
/// over the inner loops' iterations (1.4× faster at 8 rows here).
///
/// One input row (batch-1 decode) is pure weight streaming, and there the access pattern sets
/// the speed: reading two far-apart halves of the weight matrix at once (two hardware-prefetch
/// streams) is ~12 % faster on this machine than four adjacent rows or one row at a time
/// (docs/benchmarks.md, "Decode"), so each thread walks the two halves of its rows together.
public enum SmallBatchLinear {
    /// Up to this many rows this kernel beats sgemm on this class of CPU (see docs/serving.md).
    public static let maximumRows = 16

    public static func multiply(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rowCount: Int, inputSize: Int, outputSize: Int, threads: KernelThreads = .single) {
        if rowCount == 1 {
            threads.parallelFor(0..<outputSize, minimumChunk: 64) { range in
                twoStreams(output, input, weight, range, inputSize)
            }
            return
        }
        let groups = (outputSize + 3) / 4
        let weightEnd = weight + outputSize * inputSize
        threads.parallelFor(0..<groups, minimumChunk: 16) { range in
            for group in range {
                let first = group * 4
                if first + 4 <= outputSize {
                    // The next 4 weight rows are prefetched while these are multiplied with
                    // every input row, so memory keeps streaming during the passes over L1.
                    var prefetch = Prefetch(next: weight + (first + 4) * inputSize, end: weightEnd,
                                            lines: 4 * inputSize / 16, iterations: (rowCount + 1) / 2 * (inputSize / 16))
                    var row = 0
                    while row + 2 <= rowCount {
                        fourByTwo(output, input, weight, row, first, inputSize, outputSize, &prefetch)
                        row += 2
                    }
                    if row < rowCount { fourByOne(output, input, weight, row, first, inputSize, outputSize, &prefetch) }
                } else {
                    for column in first..<outputSize {
                        for row in 0..<rowCount {
                            output[row * outputSize + column] = dot(input + row * inputSize, weight + column * inputSize, inputSize)
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    private static func load(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inline(__always)
    private static func fourByTwo(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                  _ row: Int, _ column: Int, _ n: Int, _ outputSize: Int, _ prefetch: inout Prefetch) {
        let w0 = weight + column * n, w1 = w0 + n, w2 = w1 + n, w3 = w2 + n
        let x0 = input + row * n, x1 = x0 + n
        var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>(), a03 = SIMD16<Float>()
        var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>(), a13 = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            prefetch.advance()
            let v0 = load(w0 + k), v1 = load(w1 + k), v2 = load(w2 + k), v3 = load(w3 + k)
            let y0 = load(x0 + k), y1 = load(x1 + k)
            a00.addProduct(v0, y0); a01.addProduct(v1, y0); a02.addProduct(v2, y0); a03.addProduct(v3, y0)
            a10.addProduct(v0, y1); a11.addProduct(v1, y1); a12.addProduct(v2, y1); a13.addProduct(v3, y1)
            k += 16
        }
        var s00 = sum(a00), s01 = sum(a01), s02 = sum(a02), s03 = sum(a03)
        var s10 = sum(a10), s11 = sum(a11), s12 = sum(a12), s13 = sum(a13)
        while k < n {
            s00 += w0[k] * x0[k]; s01 += w1[k] * x0[k]; s02 += w2[k] * x0[k]; s03 += w3[k] * x0[k]
            s10 += w0[k] * x1[k]; s11 += w1[k] * x1[k]; s12 += w2[k] * x1[k]; s13 += w3[k] * x1[k]
            k += 1
        }
        let o0 = output + row * outputSize + column, o1 = o0 + outputSize
        o0[0] = s00; o0[1] = s01; o0[2] = s02; o0[3] = s03
        o1[0] = s10; o1[1] = s11; o1[2] = s12; o1[3] = s13
    }

    @inline(__always)
    private static func fourByOne(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                  _ row: Int, _ column: Int, _ n: Int, _ outputSize: Int, _ prefetch: inout Prefetch) {
        let w0 = weight + column * n, w1 = w0 + n, w2 = w1 + n, w3 = w2 + n
        let x0 = input + row * n
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            prefetch.advance()
            let y0 = load(x0 + k)
            a0.addProduct(load(w0 + k), y0); a1.addProduct(load(w1 + k), y0)
            a2.addProduct(load(w2 + k), y0); a3.addProduct(load(w3 + k), y0)
            k += 16
        }
        var s0 = sum(a0), s1 = sum(a1), s2 = sum(a2), s3 = sum(a3)
        while k < n {
            s0 += w0[k] * x0[k]; s1 += w1[k] * x0[k]; s2 += w2[k] * x0[k]; s3 += w3[k] * x0[k]
            k += 1
        }
        let o = output + row * outputSize + column
        o[0] = s0; o[1] = s1; o[2] = s2; o[3] = s3
    }

    /// `output[r] = weight row r · input` for r in `rows`, walking the first and second half of
    /// the rows side by side (two sequential streams). Each row's sum runs in the same order as
    /// in the batched kernels, so a sequence's logits do not depend on the batch it runs in.
    private static func twoStreams(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
                                   _ weight: UnsafePointer<Float>, _ rows: Range<Int>, _ n: Int) {
        let half = rows.count / 2
        for index in 0..<half {
            let first = rows.lowerBound + index, second = first + half
            let w0 = weight + first * n, w1 = weight + second * n
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
            var k = 0
            while k + 16 <= n {
                let x = load(input + k)
                a0.addProduct(load(w0 + k), x)
                a1.addProduct(load(w1 + k), x)
                k += 16
            }
            var s0 = sum(a0), s1 = sum(a1)
            while k < n {
                s0 += w0[k] * input[k]; s1 += w1[k] * input[k]
                k += 1
            }
            output[first] = s0
            output[second] = s1
        }
        if rows.count % 2 == 1 {
            let last = rows.upperBound - 1
            output[last] = dot(input, weight + last * n, n)
        }
    }

    /// The lanes' sum as a tree of halves (the generic `sum()` keeps the sequential order,
    /// which costs a long chain of shuffles).
    @inline(__always)
    private static func sum(_ lanes: SIMD16<Float>) -> Float {
        let eight = lanes.lowHalf + lanes.highHalf
        let four = eight.lowHalf + eight.highHalf
        let two = four.lowHalf + four.highHalf
        return two[0] + two[1]
    }

    private static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            lanes.addProduct(load(a + k), load(b + k))
            k += 16
        }
        var total = sum(lanes)
        while k < n {
            total += a[k] * b[k]
            k += 1
        }
        return total
    }
}

/// Software prefetch of the next weight tile, spread evenly over the iterations of the current
/// tile's inner loops: `lines` cache lines over `iterations` calls to `advance`.
struct Prefetch {
    private var address: UnsafePointer<Float>
    private let end: UnsafePointer<Float>
    private let linesPerIteration: Int

    init(next: UnsafePointer<Float>, end: UnsafePointer<Float>, lines: Int, iterations: Int) {
        address = next
        self.end = end
        linesPerIteration = iterations > 0 ? (lines + iterations - 1) / iterations : 0
    }

    @inline(__always)
    mutating func advance() {
        for _ in 0..<linesPerIteration where address < end {
            meshlm_prefetch(address)
            address += 16
        }
    }
}
