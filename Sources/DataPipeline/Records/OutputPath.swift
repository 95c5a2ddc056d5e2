import Foundation
import Runtime

/// Checks a command makes on where its output goes before it does any work (DESIGN §6), so an
/// output that cannot be written fails in a second, not after hours of tokenizing.
public enum OutputPath {
    /// Throws unless `path` (a file or directory still to be made, with any missing parents)
    /// can be created: its nearest existing ancestor must be a directory that takes a new file.
    public static func checkCreatable(_ path: String) throws(DataError) {
        let manager = FileManager.default
        var ancestor = parent(of: path)
        while !ancestor.isEmpty, !manager.fileExists(atPath: ancestor) { ancestor = parent(of: ancestor) }
        let directory = ancestor.isEmpty ? "." : ancestor
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError("\(path): cannot be created: \(directory) is not a directory (choose another --output)")
        }
        if let reason = refusal(directory) {
            throw DataError("\(path): cannot be created: \(directory) takes no new files (\(reason)); choose another --output")
        }
    }

    /// The directory part of `path`: `a/b/c` → `a/b`, `/a` → `/`, `c` → "" (none).
    public static func parent(of path: String) -> String { FileProblem.parent(of: path) }

    /// Throws unless the existing `directory` takes a new file.
    public static func checkWritable(directory: String) throws(DataError) {
        if let reason = refusal(directory) {
            throw DataError("\(directory): the output directory takes no new files (\(reason)); choose another --output")
        }
    }

    /// Why `directory` refuses a new file (tried by making and removing one), or nil.
    private static func refusal(_ directory: String) -> String? {
        let probe = (directory as NSString).appendingPathComponent(".meshlm-write-check-\(getpid())")
        let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard descriptor >= 0 else { return String(cString: strerror(errno)) }
        close(descriptor)
        unlink(probe)
        return nil
    }
}
