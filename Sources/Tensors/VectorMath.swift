/// Shared vector building blocks for the hand-written kernels: 16-lane loads and stores at any
/// alignment, and an `exp` that stays in registers.
///
/// Kernels process 16 floats (one AVX-512 register) per step and finish ragged ends with scalar
/// code; these helpers keep that pattern readable. They are only fast when the target CPU has
/// vector units the compiler may use (Package.swift passes `-target-cpu`).
enum Vector {
    typealias Lanes = SIMD16<Float>
    static let width = 16

    @inline(__always)
    static func load(_ pointer: UnsafePointer<Float>) -> Lanes {
        UnsafeRawPointer(pointer).loadUnaligned(as: Lanes.self)
    }

    @inline(__always)
    static func load(_ pointer: UnsafeMutablePointer<Float>) -> Lanes {
        UnsafeRawPointer(pointer).loadUnaligned(as: Lanes.self)
    }

    @inline(__always)
    static func store(_ value: Lanes, _ pointer: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Lanes.self)
    }

    /// `destination[i] += source[i]` for `count` elements.
    @inline(__always)
    static func add(_ destination: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        var index = 0
        while index + width <= count {
            store(load(destination + index) + load(source + index), destination + index)
            index += width
        }
        while index < count {
            destination[index] += source[index]
            index += 1
        }
    }

    /// The largest of `count` (≥ 1) elements.
    @inline(__always)
    static func maximum(_ source: UnsafePointer<Float>, count: Int) -> Float {
        var index = 0
        var result = -Float.infinity
        if count >= width {
            var lanes = load(source)
            index = width
            while index + width <= count {
                lanes = pointwiseMax(lanes, load(source + index))
                index += width
            }
            result = lanes.max()
        }
        while index < count {
            result = Swift.max(result, source[index])
            index += 1
        }
        return result
    }

    /// Σ `a[i] · b[i]` over `count` elements, in a fixed order.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var index = 0
        var lanes = Lanes()
        while index + width <= count {
            lanes.addProduct(load(a + index), load(b + index))
            index += width
        }
        var result = lanes.sum()
        while index < count {
            result += a[index] * b[index]
            index += 1
        }
        return result
    }

    // Cephes-style expf: e^x = 2^n · e^r with n = round(x·log2 e), |r| ≤ ln2/2, and
    // e^r = 1 + r + r²·P(r) with P of degree 5. Within 2 ulp of the exact value; inputs below
    // -87.3 (including -inf, used for masked scores) give exactly 0, so softmax needs no
    // separate mask pass.
    static let expLowest: Float = -87.33654
    static let expHighest: Float = 88.3
    static let log2e: Float = 1.442_695_04
    // 1.5·2²³ + 127: adding it rounds x·log2 e to an integer held in the low mantissa bits,
    // already biased so that shifting the bits left by 23 gives the float 2^n.
    static let roundingBias: Float = 12_583_039
    static let ln2High: Float = 0.693_359_375
    static let ln2Low: Float = -2.121_944_40e-4

    @inline(__always)
    static func exp(_ x: Lanes) -> Lanes {
        let clamped = x.clamped(lowerBound: Lanes(repeating: expLowest),
                                upperBound: Lanes(repeating: expHighest))
        let shifted = Lanes(repeating: roundingBias).addingProduct(clamped, Lanes(repeating: log2e))
        let n = shifted - roundingBias
        let r = clamped.addingProduct(n, Lanes(repeating: -ln2High))
            .addingProduct(n, Lanes(repeating: -ln2Low))
        var p = Lanes(repeating: 1.987_569_150_0e-4)
        p = Lanes(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
        p = Lanes(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
        p = Lanes(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
        p = Lanes(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
        p = Lanes(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
        p = (r + 1).addingProduct(p, r * r)
        let powerOfTwo = unsafeBitCast(unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &<< 23, to: Lanes.self)
        return (p * powerOfTwo).replacing(with: 0, where: x .< expLowest)
    }

    /// The scalar `exp` with the same polynomial, for ragged ends (so a row's elements do not
    /// depend on where the vector part stops).
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        exp(Lanes(repeating: x))[0]
    }

    /// The logistic function 1 / (1 + e^-x).
    @inline(__always)
    static func sigmoid(_ x: Lanes) -> Lanes {
        1 / (1 + exp(-x))
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        1 / (1 + exp(-x))
    }
}
