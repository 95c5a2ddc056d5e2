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
    /// With more than one thread the output is split into contiguous blocks of 16-row multiples
    /// (or columns, when there are more columns than rows), each computed by a single-threaded
    /// sgemm. Each output element is still one dot product over the inner dimension, and the
    /// results have been bitwise equal to one thread's in every shape tested, but OpenBLAS picks
    /// kernels by matrix size and does not promise it. See `KernelThreads` for why OpenBLAS itself
    /// must run one thread. The corresponding C function is `cblas_sgemm`.
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
        assert(openblas_get_num_threads() == 1, """
            OpenBLAS runs \(openblas_get_num_threads()) threads; MeshLM gives a rank's threads to \
            KernelThreads and keeps OpenBLAS at one: set BLASLibrary.threadCount = 1 at start-up
            """)
        if rowCount == 0 || columnCount == 0 { return }

        // Below ~2^18 multiply-adds a split costs more in dispatch than it saves.
        let blockSize = 16
        let splitRows = rowCount >= columnCount
        let splitLength = splitRows ? rowCount : columnCount
        let blockCount = (splitLength + blockSize - 1) / blockSize
        let worthSplitting = rowCount * columnCount * innerCount >= 1 << 18
        if threads.count == 1 || blockCount < 2 || !worthSplitting {
            sgemm(output, ldc, a, lda, aTranspose, b, ldb, bTranspose,
                  rowCount, columnCount, innerCount, alpha, beta)
            return
        }
        threads.parallelFor(0..<blockCount) { blocks in
            let start = blocks.lowerBound * blockSize
            let length = Swift.min(blocks.upperBound * blockSize, splitLength) - start
            if splitRows {
                let aPart = aTranspose == .none ? a + start * lda : a + start
                sgemm(output + start * ldc, ldc, aPart, lda, aTranspose, b, ldb, bTranspose,
                      length, columnCount, innerCount, alpha, beta)
            } else {
                let bPart = bTranspose == .none ? b + start : b + start * ldb
                sgemm(output + start, ldc, a, lda, aTranspose, bPart, ldb, bTranspose,
                      rowCount, length, innerCount, alpha, beta)
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
