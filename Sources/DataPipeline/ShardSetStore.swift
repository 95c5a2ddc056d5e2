import Foundation
import Runtime

/// Where `TokenDataset` reads its tokens: one concatenated stream of `tokenCount` ids.
protocol TokenStore: AnyObject {
    var tokenCount: Int { get }
    /// Copies tokens `range` of the stream to `destination`, converted to Int32.
    func read(_ range: Range<Int>, into destination: UnsafeMutablePointer<Int32>) throws(DataError)
}

/// The shards of a manifest directory as one stream, in manifest order. Files are opened on
/// first use and a few stay open (least recently used closed first). Token shards and SFT
/// sample shards alike (the latter also give their `loss_mask`, through `SFTShardSet`).
final class ShardSetStore: TokenStore {
    let directory: String
    let manifest: ShardManifest
    let tokenCount: Int
    /// Stream index of each shard's first token, plus the total at the end.
    private let starts: [Int]
    private var openFiles: [(shard: Int, file: HDF5File)] = []
    private let maximumOpenFiles = 4

    /// Checks every shard against the manifest: present, the recorded size, with `checksums` the
    /// recorded SHA-256 (before the file is parsed), and an HDF5 file whose datasets hold the
    /// recorded counts (SFT shards: a mask entry per token).
    init(directory: String, checksums: Bool) throws(DataError) {
        self.directory = directory
        manifest = try ShardManifest.read(directory: directory)
        var starts = [0]
        for shard in manifest.shards {
            let path = Self.path(directory, shard.file)
            guard FileManager.default.fileExists(atPath: path) else {
                throw DataError("\(path): shard file is missing (listed in \(ShardManifest.fileName))")
            }
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
            guard size == shard.bytes else {
                throw DataError("\(path): \(size) bytes, \(ShardManifest.fileName) says \(shard.bytes) (truncated or replaced); \(Self.remedy(directory))")
            }
            // With checksums, a damaged file is refused before libhdf5 parses it (libhdf5 1.10.8
            // trusts damaged metadata in places: docs/fuzzing.md).
            if checksums {
                let digest = try SHA256.hex(ofFile: path)
                guard digest == shard.sha256 else {
                    throw DataError("\(path): SHA-256 \(digest) does not match \(ShardManifest.fileName) (\(shard.sha256)): the file is corrupt")
                }
            }
            do {
                let file = try HDF5File.open(path)
                let tokens = try file.shape(of: ShardManifest.tokensDataset)
                let offsets = try file.shape(of: manifest.offsetsDataset)
                guard tokens == [shard.tokens] else {
                    throw DataError("\(path): holds \(tokens.map(String.init).joined(separator: "×")) tokens, \(ShardManifest.fileName) says \(shard.tokens)")
                }
                guard offsets == [shard.documents] else {
                    throw DataError("\(path): holds \(offsets.map(String.init).joined(separator: "×")) \(manifest.holdsSamples ? "samples" : "documents"), \(ShardManifest.fileName) says \(shard.documents)")
                }
                if manifest.holdsSamples {
                    let mask = try file.shape(of: ShardManifest.lossMaskDataset)
                    guard mask == tokens else {
                        throw DataError("\(path): holds \(mask.map(String.init).joined(separator: "×")) loss mask entries for \(shard.tokens) tokens")
                    }
                }
                if manifest.preference != nil {
                    let values = try file.shape(of: ShardManifest.sampleValuesDataset)
                    guard values == offsets else {
                        throw DataError("\(path): holds \(values.map(String.init).joined(separator: "×")) sample values for \(shard.documents) samples")
                    }
                }
            } catch let error as HDF5Error {
                throw DataError("\(path): not a readable token shard: \(error.readProblem); \(Self.remedy(directory))")
            } catch let error as DataError {
                throw error
            } catch {
                throw DataError("\(path): \(error)")
            }
            starts.append(starts[starts.count - 1] + shard.tokens)
        }
        self.starts = starts
        tokenCount = manifest.totalTokens
    }

    static func path(_ directory: String, _ file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    func read(_ range: Range<Int>, into destination: UnsafeMutablePointer<Int32>) throws(DataError) {
        try read(range, dataset: ShardManifest.tokensDataset, into: destination)
    }

    /// Copies elements `range` of the stream of `dataset` (`tokens`, or an SFT shard's
    /// `loss_mask`) to `destination`, converted to `T` by HDF5.
    func read<T: HDF5Scalar>(_ range: Range<Int>, dataset: String, into destination: UnsafeMutablePointer<T>) throws(DataError) {
        var position = range.lowerBound
        // The last shard whose start is ≤ position.
        var shard = Self.lastIndex(in: starts, notAbove: position)
        while position < range.upperBound {
            let shardEnd = starts[shard + 1]
            let end = min(range.upperBound, shardEnd)
            if end > position {
                let local = (position - starts[shard])..<(end - starts[shard])
                let file = try open(shard)
                let values: [T]
                do {
                    values = try file.read(T.self, dataset: dataset, rows: local)
                } catch {
                    throw DataError("\(file.path): cannot read \(dataset) \(local.lowerBound)..<\(local.upperBound): \(error.readProblem); \(Self.remedy(directory))")
                }
                values.withUnsafeBufferPointer { buffer in
                    (destination + (position - range.lowerBound)).update(from: buffer.baseAddress!, count: buffer.count)
                }
                position = end
            }
            shard += 1
        }
    }

    /// The offsets dataset of shard `shard` (each document's or sample's first index in it).
    func offsets(ofShard shard: Int) throws(DataError) -> [Int64] {
        try whole(Int64.self, dataset: manifest.offsetsDataset, ofShard: shard)
    }

    /// Dataset `dataset` of shard `shard`, whole (a per-document or per-sample one).
    func whole<T: HDF5Scalar>(_ type: T.Type, dataset: String, ofShard shard: Int) throws(DataError) -> [T] {
        let file = try open(shard)
        do {
            return try file.read(T.self, dataset: dataset)
        } catch {
            throw DataError("\(file.path): cannot read \(dataset): \(error.readProblem); \(Self.remedy(directory))")
        }
    }

    /// What to do about a shard that cannot be read.
    static func remedy(_ directory: String) -> String {
        "write \(directory) again with the meshlm data command that made it"
    }

    private func open(_ shard: Int) throws(DataError) -> HDF5File {
        if let index = openFiles.firstIndex(where: { $0.shard == shard }) {
            let entry = openFiles.remove(at: index)
            openFiles.append(entry)
            return entry.file
        }
        let path = Self.path(directory, manifest.shards[shard].file)
        let file: HDF5File
        do { file = try HDF5File.open(path) } catch {
            throw DataError("\(path): cannot be opened: \(error.readProblem); \(Self.remedy(directory))")
        }
        if openFiles.count == maximumOpenFiles { openFiles.removeFirst() }
        openFiles.append((shard, file))
        return file
    }

    /// The largest i with values[i] ≤ target (values sorted, values[0] ≤ target).
    static func lastIndex(in values: [Int], notAbove target: Int) -> Int {
        var low = 0, high = values.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if values[middle] <= target { low = middle } else { high = middle - 1 }
        }
        return low
    }
}
