import Foundation
import Runtime

/// The names and durable-write primitives of the on-disk layout (docs/checkpoints.md).
public enum CheckpointFiles {
    public static let indexName = "index.json"
    public static let metadataName = "metadata.json"
    public static let commitMarkerName = "COMMITTED"
    public static let latestName = "latest"

    /// `step_00000042`.
    public static func stepDirectoryName(_ step: Int) -> String {
        "step_" + String(repeating: "0", count: max(0, 8 - String(step).count)) + String(step)
    }

    /// `rank_00003.bin`.
    public static func shardName(rank: Int) -> String {
        "rank_" + String(repeating: "0", count: max(0, 5 - String(rank).count)) + String(rank) + ".bin"
    }

    /// The step a directory name encodes, if it is a step directory.
    public static func step(ofDirectoryName name: String) -> Int? {
        guard name.hasPrefix("step_"), name.count >= 13 else { return nil }
        let digits = name.dropFirst(5)
        guard digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int(digits)
    }

    /// Step directories under `directory`, oldest first (none when it does not exist).
    public static func stepDirectories(in directory: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in step(ofDirectoryName: name).map { ($0, directory + "/" + name) } }
            .sorted { $0.step < $1.step }
    }

    public static func isCommitted(_ stepDirectory: String) -> Bool {
        FileManager.default.fileExists(atPath: stepDirectory + "/" + commitMarkerName)
    }

    static func ioError(_ what: String, _ path: String) -> CheckpointError {
        let reason = String(cString: strerror(errno))
        if errno == ENOSPC || errno == EDQUOT {
            return CheckpointError(.io, "cannot \(what) \(path): \(reason); free space there (checkpoint.keep bounds how many checkpoints a run keeps) or move run.dir, then resume from the newest committed checkpoint")
        }
        return CheckpointError(.io, "cannot \(what) \(path): \(reason)")
    }

    /// Writes `data` to `path` and fsyncs it (no rename: for files inside an uncommitted step).
    static func writeDurably(_ data: Data, to path: String) throws(CheckpointError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ioError("create", path) }
        defer { close(descriptor) }
        try writeAll(descriptor, data, path: path)
        guard fsync(descriptor) == 0 else { throw ioError("fsync", path) }
    }

    static func writeAll<Bytes: ContiguousBytes>(_ descriptor: Int32, _ bytes: Bytes, path: String) throws(CheckpointError) {
        let complete = bytes.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let result = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if result < 0 && errno == EINTR { continue }
                guard result > 0 else { return false }
                written += result
            }
            return true
        }
        guard complete else { throw ioError("write", path) }
    }

    /// Replaces `path` atomically: a temporary file beside it, fsync'd, renamed over it, and the
    /// directory fsync'd so the rename itself survives a power loss.
    static func replaceAtomically(_ path: String, with data: Data) throws(CheckpointError) {
        let temporary = path + ".tmp"
        try writeDurably(data, to: temporary)
        guard rename(temporary, path) == 0 else { throw ioError("rename \(temporary) to", path) }
        try syncDirectory(containing: path)
    }

    static func syncDirectory(containing path: String) throws(CheckpointError) {
        let directory = (path as NSString).deletingLastPathComponent
        let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError("open directory", directory) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw ioError("fsync directory", directory) }
    }

    /// Deletes a step directory, its commit marker first, so a deletion cut short never leaves
    /// a directory that looks committed but misses files.
    static func removeStepDirectory(_ path: String) throws(CheckpointError) {
        let marker = path + "/" + commitMarkerName
        if FileManager.default.fileExists(atPath: marker) {
            guard unlink(marker) == 0 else { throw ioError("delete", marker) }
            try syncDirectory(containing: marker)
        }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw CheckpointError(.io, "cannot delete \(path): \(FileProblem.reason(error, path: path)); delete it by hand")
        }
    }
}
