/// Why a checkpoint could not be written, found, read or verified. The message names the file
/// and, where one is involved, the tensor, so a user knows what to delete or restore.
public struct CheckpointError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The step directory has no `COMMITTED` marker: a save that never finished.
        case notCommitted
        /// A file the index or the format requires does not exist.
        case missingFile
        /// A shard file ends before a frame the index places in it.
        case truncatedFile
        /// A frame does not decompress, or holds a different number of bytes than the index says.
        case corruptFrame
        /// A frame's uncompressed bytes do not match the index's checksum.
        case checksumMismatch
        /// A tensor name the index does not hold.
        case unknownTensor
        /// A requested element range outside the tensor.
        case rangeOutsideTensor
        /// The saved slices leave part of a requested range (or of a tensor) unwritten.
        case rangeNotCovered
        /// `index.json` is unreadable, from another format version, or inconsistent.
        case badIndex
        /// A tensor stored in a block format (a quantized checkpoint) where f32 values are needed.
        case quantizedTensor
        /// A system call failed (the message carries `errno`'s text).
        case io
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
