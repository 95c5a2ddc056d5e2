import Foundation

/// Why a Foundation file operation failed, in words a user can act on ("Is a directory", "its
/// directory /a/b does not exist"), never Foundation's own text ("The operation could not be
/// completed. (NSCocoaErrorDomain error 512.)"). Callers name the path and the remedy around it
/// (DESIGN §6): `"cannot write \(path): \(FileProblem.reason(error, path: path)); choose another --output"`.
public enum FileProblem {
    /// What is in the way at `path` (it is a directory, its directory is missing), else the
    /// system's reason when Foundation kept it (its underlying `errno`), else the kind of failure
    /// Foundation reported.
    public static func reason(_ error: any Error, path: String) -> String {
        if let found = inspect(path) { return found }
        if let code = errorNumber(error) { return String(cString: strerror(code)) }
        if let cocoa = error as? CocoaError { return words(cocoa.code) }
        return String(describing: error)
    }

    /// Why a file could not be written at `path` when the call said only that it failed
    /// (`FileManager.createFile` returns false): what is in the way, else a remedy to check.
    public static func reason(writing path: String) -> String {
        inspect(path) ?? "check that its directory is writable and the disk has space"
    }

    /// The file a Foundation error names, if it names one.
    public static func path(of error: any Error) -> String? {
        guard let cocoa = error as? CocoaError else { return nil }
        return cocoa.filePath ?? cocoa.url?.path
    }

    /// `errno` of a `POSIXError`, or of the one a `CocoaError` wraps.
    private static func errorNumber(_ error: any Error) -> Int32? {
        if let posix = error as? POSIXError { return posix.code.rawValue }
        guard let cocoa = error as? CocoaError else { return nil }
        if let posix = cocoa.underlying as? POSIXError { return posix.code.rawValue }
        if let underlying = cocoa.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return Int32(underlying.code)
        }
        return nil
    }

    /// What is in the way of writing `path`: the path is a directory, or its parent is missing or
    /// not a directory. nil when none of these holds.
    private static func inspect(_ path: String) -> String? {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return "it is a directory" }
        let parent = parent(of: path)
        guard !parent.isEmpty else { return nil }
        if !manager.fileExists(atPath: parent, isDirectory: &isDirectory) { return "its directory \(parent) does not exist" }
        if !isDirectory.boolValue { return "\(parent) is not a directory" }
        return nil
    }

    /// The directory part of `path`: `a/b/c` → `a/b`, `/a` → `/`, `c` → "" (none). Not
    /// `NSString.deletingLastPathComponent`, which traps on a one-component relative path in
    /// swift-corelibs-foundation.
    public static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    private static func words(_ code: CocoaError.Code) -> String {
        switch code {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteOutOfSpace: return "no space left on device"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileWriteFileExists: return "a file of that name exists"
        case .fileWriteInvalidFileName: return "not a valid file name"
        case .fileReadCorruptFile: return "the file is corrupt"
        case .fileReadInapplicableStringEncoding, .fileReadUnknownStringEncoding: return "not text in the expected encoding"
        default: return "the file system refused it"
        }
    }
}
