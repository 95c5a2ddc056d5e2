import Tensors

/// `output = input · weightᵀ` for a few rows (decode batches): `[rows, out]` from `[rows, in]`
/// and `[out, in]`, each weight row read from memory once for all input rows.
///
/// Decode at small batch is bound by streaming the weights; sgemm packs its whole B operand
/// (the weights) first, which here triples the traffic. This kernel takes 4 weight rows at a
/// time (12 KB at in = 768, kept in L1) against the input rows two at a time: 8 accumulators,
/// 6 loads per 8 fused multiply-adds. Threads split the output columns.
public enum SmallBatchLinear {
    /// Up to this many rows this kernel beats sgemm on this class of CPU (see docs/serving.md).
    public static let maximumRows = 16

    public static func multiply(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rowCount: Int, inputSize: Int, outputSize: Int, threads: KernelThreads = .single) {
        let groups = (outputSize + 3) / 4
        threads.parallelFor(0..<groups, minimumChunk: 16) { range in
            for group in range {
                let first = group * 4
                if first + 4 <= outputSize {
                    var row = 0
                    while row + 2 <= rowCount {
                        fourByTwo(output, input, weight, row, first, inputSize, outputSize)
                        row += 2
                    }
                    if row < rowCount { fourByOne(output, input, weight, row, first, inputSize, outputSize) }
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
                                  _ row: Int, _ column: Int, _ n: Int, _ outputSize: Int) {
        let w0 = weight + column * n, w1 = w0 + n, w2 = w1 + n, w3 = w2 + n
        let x0 = input + row * n, x1 = x0 + n
        var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>(), a03 = SIMD16<Float>()
        var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>(), a13 = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            let v0 = load(w0 + k), v1 = load(w1 + k), v2 = load(w2 + k), v3 = load(w3 + k)
            let y0 = load(x0 + k), y1 = load(x1 + k)
            a00.addProduct(v0, y0); a01.addProduct(v1, y0); a02.addProduct(v2, y0); a03.addProduct(v3, y0)
            a10.addProduct(v0, y1); a11.addProduct(v1, y1); a12.addProduct(v2, y1); a13.addProduct(v3, y1)
            k += 16
        }
        var s = [a00.sum(), a01.sum(), a02.sum(), a03.sum(), a10.sum(), a11.sum(), a12.sum(), a13.sum()]
        while k < n {
            s[0] += w0[k] * x0[k]; s[1] += w1[k] * x0[k]; s[2] += w2[k] * x0[k]; s[3] += w3[k] * x0[k]
            s[4] += w0[k] * x1[k]; s[5] += w1[k] * x1[k]; s[6] += w2[k] * x1[k]; s[7] += w3[k] * x1[k]
            k += 1
        }
        let o0 = output + row * outputSize + column, o1 = o0 + outputSize
        o0[0] = s[0]; o0[1] = s[1]; o0[2] = s[2]; o0[3] = s[3]
        o1[0] = s[4]; o1[1] = s[5]; o1[2] = s[6]; o1[3] = s[7]
    }

    @inline(__always)
    private static func fourByOne(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                  _ row: Int, _ column: Int, _ n: Int, _ outputSize: Int) {
        let w0 = weight + column * n, w1 = w0 + n, w2 = w1 + n, w3 = w2 + n
        let x0 = input + row * n
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            let y0 = load(x0 + k)
            a0.addProduct(load(w0 + k), y0); a1.addProduct(load(w1 + k), y0)
            a2.addProduct(load(w2 + k), y0); a3.addProduct(load(w3 + k), y0)
            k += 16
        }
        var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
        while k < n {
            s0 += w0[k] * x0[k]; s1 += w1[k] * x0[k]; s2 += w2[k] * x0[k]; s3 += w3[k] * x0[k]
            k += 1
        }
        let o = output + row * outputSize + column
        o[0] = s0; o[1] = s1; o[2] = s2; o[3] = s3
    }

    private static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD16<Float>()
        var k = 0
        while k + 16 <= n {
            lanes.addProduct(load(a + k), load(b + k))
            k += 16
        }
        var total = lanes.sum()
        while k < n {
            total += a[k] * b[k]
            k += 1
        }
        return total
    }
}
