import Testing

/// How two float arrays differ, element by element, in one linear pass.
///
/// Tests compare tensors through `expectSameBits` and `expectClose` rather than
/// `#expect(a == b)`: on failure the testing library describes two unequal arrays by an edit
/// script between them, quadratic in their length (minutes for a model's gradients), while this
/// reports in milliseconds how many elements differ and by how much.
public struct TensorDifference: Sendable, CustomStringConvertible {
    /// Elements compared (the shorter length when the counts differ).
    public var elementCount = 0
    /// Whether the two arrays had different lengths.
    public var countMismatch: (actual: Int, expected: Int)?
    /// Elements whose bit patterns differ (NaN against the same NaN counts as equal).
    public var differingCount = 0
    /// The first element whose bits differ.
    public var firstDifferingIndex: Int?
    /// max |actual − expected|, and where (the first such element).
    public var largestDifference = 0.0
    public var largestDifferenceIndex: Int?
    public var largestDifferencePair: (actual: Double, expected: Double)?
    /// max |expected|: the scale that `relativeDifference` divides by.
    public var expectedScale = 0.0

    /// max |actual − expected| / max |expected|: the largest error relative to the reference's
    /// scale, so near-zero reference entries do not blow it up.
    public var relativeDifference: Double { largestDifference / Swift.max(expectedScale, 1e-30) }

    public init(_ actual: some Collection<Float>, _ expected: some Collection<Float>) {
        self.init(actual, expected.lazy.map(Double.init), sameBits: { a, b in a.bitPattern == Float(b).bitPattern })
    }

    /// Against a Double reference (naive kernels, finite differences): elements "differ" when
    /// the Float is not the reference rounded to Float.
    public init(_ actual: some Collection<Float>, _ expected: some Collection<Double>) {
        self.init(actual, expected, sameBits: { a, b in a.bitPattern == Float(b).bitPattern })
    }

    private init(_ actual: some Collection<Float>, _ expected: some Collection<Double>, sameBits: (Float, Double) -> Bool) {
        if actual.count != expected.count { countMismatch = (actual.count, expected.count) }
        for (index, (a, b)) in zip(actual, expected).enumerated() {
            elementCount += 1
            expectedScale = Swift.max(expectedScale, Swift.abs(b))
            if sameBits(a, b) || (a.isNaN && b.isNaN) { continue }
            differingCount += 1
            if firstDifferingIndex == nil { firstDifferingIndex = index }
            let difference = Swift.abs(Double(a) - b)
            // A NaN on one side only is the largest difference there is.
            let measured = difference.isNaN ? Double.infinity : difference
            if largestDifferenceIndex == nil || measured > largestDifference {
                largestDifference = measured
                largestDifferenceIndex = index
                largestDifferencePair = (Double(a), b)
            }
        }
    }

    /// One line: "3 of 10240 elements differ (first at 17); largest |Δ| 1.2e-07 at 17 (0.5 vs
    /// 0.50000012), 2.4e-07 of max |expected| 0.5".
    public var description: String {
        var parts: [String] = []
        if let countMismatch {
            parts.append("lengths differ: \(countMismatch.actual) vs \(countMismatch.expected) expected")
        }
        if differingCount == 0 {
            parts.append("all \(elementCount) elements have the same bits")
        } else {
            parts.append("\(differingCount) of \(elementCount) elements differ (first at \(firstDifferingIndex ?? 0))")
            if let index = largestDifferenceIndex, let pair = largestDifferencePair {
                parts.append("largest |Δ| \(largestDifference) at \(index) (\(pair.actual) vs \(pair.expected) expected), "
                             + "\(relativeDifference) of max |expected| \(expectedScale)")
            }
        }
        return parts.joined(separator: "; ")
    }
}

/// Checks that `actual` has exactly the bits of `expected` (the determinism tests: thread
/// counts, layouts, recomputation, resume). On failure one issue says how many elements differ
/// and the largest difference; nothing is ever diffed element by element.
@discardableResult
public func expectSameBits(
    _ actual: some Collection<Float>, _ expected: some Collection<Float>, _ label: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) -> TensorDifference {
    let difference = TensorDifference(actual, expected)
    if difference.differingCount != 0 || difference.countMismatch != nil {
        Issue.record(Comment(rawValue: prefixed(label(), "\(difference)")), sourceLocation: sourceLocation)
    }
    return difference
}

/// Checks that max |actual − expected| / max |expected| ≤ `relativeTolerance`, prints the
/// figure (the logs keep every test's measured error), and on failure records one issue with
/// the count of differing elements and the largest difference.
@discardableResult
public func expectClose(
    _ actual: some Collection<Float>, _ expected: some Collection<Float>, relativeTolerance: Double,
    _ label: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation
) -> TensorDifference {
    check(TensorDifference(actual, expected), relativeTolerance, label(), sourceLocation)
}

@discardableResult
public func expectClose(
    _ actual: some Collection<Float>, _ expected: some Collection<Double>, relativeTolerance: Double,
    _ label: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation
) -> TensorDifference {
    check(TensorDifference(actual, expected), relativeTolerance, label(), sourceLocation)
}

private func check(_ difference: TensorDifference, _ tolerance: Double, _ label: String,
                   _ sourceLocation: SourceLocation) -> TensorDifference {
    print(prefixed(label, "max rel diff \(difference.relativeDifference) (tolerance \(tolerance))"))
    if difference.countMismatch != nil || !(difference.relativeDifference <= tolerance) {
        Issue.record(Comment(rawValue: prefixed(label, "beyond relative tolerance \(tolerance): \(difference)")),
                     sourceLocation: sourceLocation)
    }
    return difference
}

private func prefixed(_ label: String, _ text: String) -> String {
    label.isEmpty ? text : "\(label): \(text)"
}

/// `expectSameBits` for several buffers at once (a kernel's outputs, 1 thread against N):
/// one issue per buffer that differs, naming its index.
@discardableResult
public func expectSameBits(
    _ actual: [[Float]], _ expected: [[Float]], _ label: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) -> [TensorDifference] {
    if actual.count != expected.count {
        Issue.record(Comment(rawValue: prefixed(label(), "\(actual.count) buffers vs \(expected.count) expected")),
                     sourceLocation: sourceLocation)
    }
    return zip(actual, expected).enumerated().map { index, pair in
        expectSameBits(pair.0, pair.1, prefixed(label(), "buffer \(index)"), sourceLocation: sourceLocation)
    }
}
