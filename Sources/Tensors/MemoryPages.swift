#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Returning memory that will not be read again to the operating system without freeing the
/// allocation it is part of (QLoRA's f32 base weights inside the parameter arena).
public enum MemoryPages {
    /// The page size. The corresponding C function is `sysconf(_SC_PAGESIZE)`.
    public static let size = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Releases the whole pages inside `count` floats at `pointer` (`madvise(MADV_DONTNEED)`):
    /// they stop counting in the resident set and read as zeros if touched again; the partial
    /// pages at either end stay. Returns the bytes released. The corresponding C function is
    /// `madvise`.
    @discardableResult
    public static func release(_ pointer: UnsafeMutablePointer<Float>, count: Int) -> Int {
        let start = Int(bitPattern: UnsafeMutableRawPointer(pointer))
        let end = start + count * MemoryLayout<Float>.stride
        let first = (start + size - 1) / size * size, last = end / size * size
        guard last > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return 0 }
        // Advice only: if the kernel refuses it, the pages simply stay resident.
        return madvise(address, last - first, Int32(MADV_DONTNEED)) == 0 ? last - first : 0
    }

}
