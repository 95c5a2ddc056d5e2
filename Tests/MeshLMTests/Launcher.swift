import Foundation
import Testing

/// Runs a built product of this package (plain or under `mpirun`) and captures what it printed.
struct Launch {
    let status: Int32
    let standardOutput: String
    let standardError: String
    var lines: [String] { standardOutput.split(separator: "\n").map(String.init) }
}

enum Launcher {
    /// The directory holding the products (`meshlm`, `mpi-checks`) beside the test bundle.
    static var productsDirectory: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: directory.appendingPathComponent("meshlm").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    /// `mpirun -np ranks product arguments…`, as root, oversubscribed, one BLAS thread per rank;
    /// killed after `timeout` seconds so a hang fails the test instead of the suite.
    static func mpirun(_ ranks: Int, _ product: String, _ arguments: [String], timeout: Double = 120) throws -> Launch {
        let executable = productsDirectory.appendingPathComponent(product).path
        return try run("/usr/bin/env", ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--allow-run-as-root",
                                        "-x", "OPENBLAS_NUM_THREADS=1", executable] + arguments, timeout: timeout)
    }

    /// `product arguments…` without mpirun, in `directory` when given (for relative paths).
    static func plain(_ product: String, _ arguments: [String], environment extra: [String: String] = [:],
                      directory: String? = nil, timeout: Double = 120) throws -> Launch {
        try run(productsDirectory.appendingPathComponent(product).path, arguments, environment: extra, directory: directory,
                timeout: timeout)
    }

    /// This process's environment as the products run in: oversubscribed mpirun, one BLAS
    /// thread, no preset core type; `extra` on top.
    static func childEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment.removeValue(forKey: "OPENBLAS_CORETYPE")
        environment.merge(extra) { _, new in new }
        return environment
    }

    static func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                    directory: String? = nil, timeout: Double) throws -> Launch {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.environment = childEnvironment(extra)
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        // Read both pipes while the process runs so a chatty child cannot fill one and block.
        let outputData = Locked(Data()), errorData = Locked(Data())
        let group = DispatchGroup()
        for (pipe, sink) in [(output, outputData), (error, errorData)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                sink.set(data)
                group.leave()
            }
        }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            kill(-process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            group.wait()
            Issue.record("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout) s")
        }
        process.waitUntilExit()
        group.wait()
        return Launch(status: process.terminationStatus,
                      standardOutput: String(decoding: outputData.get(), as: UTF8.self),
                      standardError: String(decoding: errorData.get(), as: UTF8.self))
    }
}

extension Launcher {
    /// Starts `executable arguments…` with every signal unblocked and at its default action,
    /// standard output and error appended to `log`, and returns its pid (the caller signals
    /// and waits for it). `Process` children inherit the blocked signals of the test's
    /// threads, so a SIGTERM or SIGUSR1 sent to them would never arrive.
    static func spawnWithDefaultSignals(_ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environment = childEnvironment()
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid = pid_t()
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard status == 0 else { throw POSIXError(POSIXErrorCode(rawValue: status) ?? .EINVAL) }
        return pid
    }

    /// Waits up to `timeout` seconds for `pid` to exit and returns its exit status (128 + the
    /// signal if it was killed), or nil after killing it when it did not finish in time.
    static func waitForExit(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return nil
    }
}

/// A value shared with a reader thread.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
}

/// The repository root (for configs/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
