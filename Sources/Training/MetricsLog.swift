import Foundation
import Runtime

/// `RUN/metrics.jsonl`: one JSON object per logged step (DESIGN §4), written by rank 0 and
/// flushed line by line so a crashed run keeps every row it logged.
public final class MetricsLog {
    public let path: String
    private let handle: FileHandle?

    /// Opens the file on rank 0 (other ranks hold no file). `append` continues a resumed run's
    /// file; otherwise it starts empty.
    public init(directory: String, rank: Int, append: Bool) throws {
        path = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl").path
        guard rank == 0 else {
            handle = nil
            return
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw JobError("cannot create \(path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw JobError("cannot open \(path) for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    public func write(_ line: JSONLine) {
        handle?.write(Data((line.text + "\n").utf8))
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
