import CBLAS

/// Whether a matrix operand of `BLAS.multiply` is used as stored or transposed.
public enum Transpose: Sendable {
    case none
    case transposed
}

/// The one checked entry to OpenBLAS's `cblas_sgemm`, row-major, all four transpose combinations.
public enum BLAS {
    /// `output = alpha · op(a) · op(b) + beta · output`, row-major.
    ///
    ///     op(a)   [rowCount, innerCount]     a stored [rowCount, innerCount], or [innerCount, rowCount] if transposed
    ///     op(b)   [innerCount, columnCount]  b stored [innerCount, columnCount], or [columnCount, innerCount] if transposed
    ///     output  [rowCount, columnCount]
    ///
    /// Strides are the distance between consecutive stored rows (BLAS leading dimensions); `nil`
    /// means densely packed. With `beta == 0` the output is only written, never read.
    ///
    /// The output is cut into `ProductBlocks` — contiguous blocks of rows (or columns, when there
    /// are more columns than rows) that depend on the sizes alone — and each block is one
    /// single-threaded sgemm. Threads share out whole blocks; one thread computes the same blocks
    /// in turn. Every output element therefore comes from the same sgemm call, with the same
    /// arguments, whatever the thread count, and the bits cannot depend on it. Splitting at the
    /// thread count instead does not keep them: OpenBLAS's kernels round differently for the same
    /// element in calls of different sizes (its AVX2 Haswell/Zen kernels in ~10 % of the outputs of
    /// a 160-row product cut in two, its AVX-512 ones when cut at 16 rows). See `KernelThreads` for
    /// why OpenBLAS itself must run one thread. The corresponding C function is `cblas_sgemm`.
    public static func multiply(
        output: UnsafeMutablePointer<Float>, outputStride: Int? = nil,
        a: UnsafePointer<Float>, aStride: Int? = nil, aTranspose: Transpose = .none,
        b: UnsafePointer<Float>, bStride: Int? = nil, bTranspose: Transpose = .none,
        rowCount: Int, columnCount: Int, innerCount: Int,
        alpha: Float = 1, beta: Float = 0, threads: KernelThreads = .single
    ) {
        let aStoredColumns = aTranspose == .none ? innerCount : rowCount
        let bStoredColumns = bTranspose == .none ? columnCount : innerCount
        // BLAS wants leading dimensions ≥ 1 even for empty matrices.
        let lda = aStride ?? Swift.max(1, aStoredColumns)
        let ldb = bStride ?? Swift.max(1, bStoredColumns)
        let ldc = outputStride ?? Swift.max(1, columnCount)
        precondition(rowCount >= 0 && columnCount >= 0 && innerCount >= 0,
                     "negative matrix size \(rowCount)×\(innerCount)·\(innerCount)×\(columnCount)")
        precondition(lda >= Swift.max(1, aStoredColumns), "a's stride \(lda) is below its \(aStoredColumns) stored columns")
        precondition(ldb >= Swift.max(1, bStoredColumns), "b's stride \(ldb) is below its \(bStoredColumns) stored columns")
        precondition(ldc >= Swift.max(1, columnCount), "output's stride \(ldc) is below its \(columnCount) columns")
        precondition(Swift.max(rowCount, columnCount, innerCount, lda, ldb, ldc) <= Int(Int32.max),
                     "matrix dimension beyond OpenBLAS's 32-bit integers")
        precondition(openblas_get_num_threads() == 1, """
            OpenBLAS runs \(openblas_get_num_threads()) threads; MeshLM gives a rank's threads to \
            KernelThreads and keeps OpenBLAS at one: set BLASLibrary.threadCount = 1 at start-up
            """)
        if rowCount == 0 || columnCount == 0 { return }

        let blocks = ProductBlocks(rowCount: rowCount, columnCount: columnCount, innerCount: innerCount)
        threads.parallelFor(0..<blocks.count) { indices in
            for index in indices {
                let part = blocks.bounds(of: index)
                if blocks.splitsRows {
                    let aPart = aTranspose == .none ? a + part.lowerBound * lda : a + part.lowerBound
                    sgemm(output + part.lowerBound * ldc, ldc, aPart, lda, aTranspose, b, ldb, bTranspose,
                          part.count, columnCount, innerCount, alpha, beta)
                } else {
                    let bPart = bTranspose == .none ? b + part.lowerBound : b + part.lowerBound * ldb
                    sgemm(output + part.lowerBound, ldc, a, lda, aTranspose, bPart, ldb, bTranspose,
                          rowCount, part.count, innerCount, alpha, beta)
                }
            }
        }
    }

    @inline(__always)
    static func sgemm(
        _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
        _ a: UnsafePointer<Float>, _ lda: Int, _ aTranspose: Transpose,
        _ b: UnsafePointer<Float>, _ ldb: Int, _ bTranspose: Transpose,
        _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ beta: Float
    ) {
        cblas_sgemm(CblasRowMajor,
                    aTranspose == .none ? CblasNoTrans : CblasTrans,
                    bTranspose == .none ? CblasNoTrans : CblasTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// How `BLAS.multiply` cuts one product into sgemm calls: a function of the sizes alone, never
/// of the thread count, so that any number of threads computes every output element in the same
/// call (docs/architecture.md, "Determinism").
///
/// The longer of the output's two dimensions is cut into `count` blocks of nearly equal length
/// with boundaries on multiples of 16. Each block repacks the operand it shares with the others
/// (all of b when rows are cut), which one call packs once: that costs one thread about
/// 40 rows' worth of compute per block with OpenBLAS's AVX-512 kernels (blocks of 128 rows ran
/// at 0.76–0.92 of one call's speed, blocks of 512 at 0.90–0.97), so blocks are at least
/// `minimumLength` long. `count` is a power of two, so 2 or 4 threads share blocks evenly.
/// Products below `minimumWork` multiply-adds are not cut.
public struct ProductBlocks: Sendable, Equatable {
    public static let minimumWork = 1 << 18
    public static let minimumLength = 1024
    public static let maximumCount = 64
    static let alignment = 16

    /// Whether blocks are rows of the output (otherwise columns).
    public let splitsRows: Bool
    /// The length of the dimension being cut.
    public let length: Int
    /// How many blocks: a power of two, at least 1.
    public let count: Int

    public init(rowCount: Int, columnCount: Int, innerCount: Int) {
        splitsRows = rowCount >= columnCount
        length = splitsRows ? rowCount : columnCount
        let most = rowCount * columnCount * innerCount < Self.minimumWork
            ? 1 : Swift.min(length / Self.minimumLength, Self.maximumCount)
        var count = 1
        while count * 2 <= most { count *= 2 }
        self.count = count
    }

    /// Rows (or columns) of block `index`: boundaries at multiples of 16, lengths within 16 of
    /// each other, the last block ending at `length`.
    public func bounds(of index: Int) -> Range<Int> {
        let units = (length + Self.alignment - 1) / Self.alignment
        func start(_ block: Int) -> Int { Swift.min(length, block * units / count * Self.alignment) }
        return start(index)..<(index + 1 == count ? length : start(index + 1))
    }
}

/// What OpenBLAS this process runs, and its thread count.
public enum BLASLibrary {
    /// The kernel family OpenBLAS picked for this CPU (e.g. "Cooperlake", "Haswell"). A weaker
    /// family than the CPU supports usually means `OPENBLAS_CORETYPE` is set in the environment.
    /// The corresponding C function is `openblas_get_corename`.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// OpenBLAS's build configuration (version, DYNAMIC_ARCH, MAX_THREADS…).
    /// The corresponding C function is `openblas_get_config`.
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }

    /// OpenBLAS's own thread count: set it to 1 once when the rank starts (see `KernelThreads`)
    /// and leave it. The corresponding C functions are `openblas_get_num_threads` and
    /// `openblas_set_num_threads`.
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set {
            precondition(newValue >= 1, "OpenBLAS needs at least one thread, not \(newValue)")
            openblas_set_num_threads(Int32(newValue))
        }
    }
}
