/// Shared vector building blocks for the hand-written kernels: 16-lane loads and stores at any
/// alignment, and an `exp` that stays in registers.
///
/// Kernels process 16 floats (one AVX-512 register) per step and finish ragged ends with scalar
/// code; these helpers keep that pattern readable. They are only fast when the target CPU has
/// vector units the compiler may use (Package.swift passes `-target-cpu`).
enum Vector {
    typealias Lanes = SIMD16<Float>
    static var width: Int { 16 }

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
                lanes = maximum(lanes, load(source + index))
                index += width
            }
            result = horizontalMaximum(lanes)
        }
        while index < count {
            result = Swift.max(result, source[index])
            index += 1
        }
        return result
    }

    /// Lane-wise maximum as compare-and-blend: the standard library's `pointwiseMax` and
    /// `clamped` follow IEEE maxNum for NaNs and compile to scalar loops, many times slower.
    @inline(__always)
    static func maximum(_ a: Lanes, _ b: Lanes) -> Lanes {
        a.replacing(with: b, where: a .< b)
    }

    @inline(__always)
    static func minimum(_ a: Lanes, _ b: Lanes) -> Lanes {
        a.replacing(with: b, where: b .< a)
    }

    /// The largest lane, by halving (the standard library's `max()` is a scalar loop).
    @inline(__always)
    static func horizontalMaximum(_ lanes: Lanes) -> Float {
        let eight = lanes.lowHalf.replacing(with: lanes.highHalf, where: lanes.lowHalf .< lanes.highHalf)
        let four = eight.lowHalf.replacing(with: eight.highHalf, where: eight.lowHalf .< eight.highHalf)
        let two = four.lowHalf.replacing(with: four.highHalf, where: four.lowHalf .< four.highHalf)
        return Swift.max(two[0], two[1])
    }

    /// The sum of the lanes by halving: a fixed order, and 4 vector adds instead of 15 scalar ones.
    @inline(__always)
    static func horizontalSum(_ lanes: Lanes) -> Float {
        let eight = lanes.lowHalf + lanes.highHalf
        let four = eight.lowHalf + eight.highHalf
        let two = four.lowHalf + four.highHalf
        return two[0] + two[1]
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
        var result = horizontalSum(lanes)
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
    static var expLowest: Float { -87.33654 }
    static var expHighest: Float { 88.3 }
    static var log2e: Float { 1.442_695_04 }
    // 1.5·2²³ + 127: adding it rounds x·log2 e to an integer held in the low mantissa bits,
    // already biased so that shifting the bits left by 23 gives the float 2^n.
    static var roundingBias: Float { 12_583_039 }
    static var ln2High: Float { 0.693_359_375 }
    static var ln2Low: Float { -2.121_944_40e-4 }

    // `@_transparent` rather than `@inline(__always)`: the optimizer declined the latter in
    // larger callers and passed the 64-byte vector through memory on every call (3x slower).
    @_transparent
    static func exp(_ x: Lanes) -> Lanes {
        let clamped = minimum(maximum(x, Lanes(repeating: expLowest)), Lanes(repeating: expHighest))
        return expOfClamped(clamped).replacing(with: 0, where: x .< expLowest)
    }

    /// `exp` for finite x ≤ 0 (softmax after subtracting the row maximum): no upper clamp and no
    /// mask, since e^x ≥ 0 cannot overflow and clamping at the lowest input already gives a
    /// value (1.2e-38) that vanishes in any sum with the maximum's term, 1.
    @_transparent
    static func expNonPositive(_ x: Lanes) -> Lanes {
        expOfClamped(maximum(x, Lanes(repeating: expLowest)))
    }

    /// e^x for x already within [expLowest, expHighest]: the range reduction and polynomial.
    @_transparent
    static func expOfClamped(_ clamped: Lanes) -> Lanes {
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
        return p * unsafeBitCast(unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &<< 23, to: Lanes.self)
    }

    /// The scalar `exp` with the same polynomial, for ragged ends (so a row's elements do not
    /// depend on where the vector part stops).
    @_transparent
    static func exp(_ x: Float) -> Float {
        exp(Lanes(repeating: x))[0]
    }

    /// √x for x ≥ 0, within 2 ulp. The standard library's `squareRoot()` on SIMD types and even
    /// scalar loops compile to one `sqrtss` (plus a libm call) per element here; this is
    /// 1/√x from the bit-pattern estimate (0x5f3759df, ~3.4 % off) refined by three Newton steps
    /// (each squares the error), then x · 1/√x. x = 0 gives 0.
    @inline(__always)
    static func squareRoot(_ x: Lanes) -> Lanes {
        let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
        var estimate = unsafeBitCast(SIMD16<UInt32>(repeating: 0x5F37_59DF) &- (bits &>> 1), to: Lanes.self)
        let halfX = 0.5 * x
        for _ in 0..<3 {
            estimate = estimate * (1.5 - halfX * estimate * estimate)
        }
        return x * estimate
    }

    /// The scalar `squareRoot` with the same steps, for ragged ends.
    @inline(__always)
    static func squareRoot(_ x: Float) -> Float {
        squareRoot(Lanes(repeating: x))[0]
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
