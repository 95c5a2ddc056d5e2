import Foundation
import Runtime

/// `RUN/metrics.jsonl`: one JSON object per logged step (DESIGN §4), written by rank 0 and
/// flushed line by line so a crashed run keeps every row it logged.
public final class MetricsLog {
    public let path: String
    private let handle: FileHandle?

    /// Rows of steps at or after the resumed step that `init` dropped (they were logged after
    /// the checkpoint the run resumes from, and the resumed run logs those steps again).
    public private(set) var droppedRows = 0

    /// Opens the file on rank 0 (other ranks hold no file). A run resuming at step `resumingAt`
    /// continues its file without the rows of steps ≥ that step (and a torn last line), so the
    /// file holds each step once; a run from step 0 starts it empty.
    public init(directory: String, rank: Int, resumingAt start: Int) throws {
        path = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl").path
        guard rank == 0 else {
            handle = nil
            return
        }
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw JobError("cannot create the run directory \(directory): \(FileProblem.reason(error, path: directory)); choose another run.dir")
        }
        if start > 0, let existing = FileManager.default.contents(atPath: path) {
            let (kept, dropped) = Self.rows(of: existing, before: start)
            if kept.count != existing.count {
                do {
                    try kept.write(to: URL(fileURLWithPath: path), options: .atomic)
                } catch {
                    throw JobError("cannot rewrite \(path) without the rows of steps ≥ \(start) (\(FileProblem.reason(error, path: path))); "
                                   + "check the run directory is writable")
                }
            }
            droppedRows = dropped
        } else if !FileManager.default.createFile(atPath: path, contents: nil) {
            throw JobError("cannot create \(path): \(FileProblem.reason(writing: path)); choose another run.dir")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw JobError("cannot open \(path) for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    /// The complete lines of a metrics file whose `step` is below `start` (lines without a
    /// step are kept), and how many rows were left out.
    static func rows(of file: Data, before start: Int) -> (kept: Data, dropped: Int) {
        var kept = Data(), dropped = 0
        var lineStart = file.startIndex
        while let newline = file[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = file[lineStart...newline]
            lineStart = newline + 1
            let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any]
            if let step = object?["step"] as? Int, step >= start {
                dropped += 1
            } else {
                kept.append(line)
            }
        }
        if lineStart < file.endIndex { dropped += 1 }  // a torn last line, from a crash mid-write
        return (kept, dropped)
    }

    /// Appends a row; a failed write (a full disk) is an error, not a trap or a lost row.
    public func write(_ line: JSONLine) throws {
        guard let handle else { return }
        let bytes = Array((line.text + "\n").utf8)
        let start = lseek(handle.fileDescriptor, 0, SEEK_END)
        var done = 0
        while done < bytes.count {
            let count = bytes[done...].withUnsafeBytes { Foundation.write(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let reason = errno
                // No torn row left behind: the file ends with the last whole row.
                if start >= 0 { _ = ftruncate(handle.fileDescriptor, start) }
                errno = reason
                throw JobError("cannot append to \(path): \(String(cString: strerror(errno))); free space there or move run.dir, then resume from the newest committed checkpoint")
            }
            done += count
        }
    }

    deinit { try? handle?.close() }
}

/// This process's peak resident set size in MiB (`getrusage`'s `ru_maxrss`).
public func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// This process's current resident set size in MiB (the second field of /proc/self/statm, in
/// pages); 0 where there is no /proc.
public func currentResidentMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}
