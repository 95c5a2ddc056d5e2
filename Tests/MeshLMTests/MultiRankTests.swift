import Foundation
import Testing

let collectiveNames = ["allreduce-sum-float", "allreduce-sum-double", "allreduce-max-int32", "allreduce-max-int64",
                       "allreduce-min-float", "allreduce-max-double", "allreduce-sum-int64", "broadcast",
                       "reduce-scatter-block", "reduce-scatter-uneven", "allgather", "allgatherv", "gatherv", "alltoall",
                       "alltoallv", "send-receive-ring", "isend-irecv", "nonblocking-collectives", "split",
                       "gather-strings", "barrier"]

/// Collectives and mesh layouts under real `mpirun`, with rank-dependent inputs (Tests/MPIChecks).
/// Serialized: each launch already oversubscribes the two cores.
@Suite(.serialized) struct MultiRankTests {
    @Test(arguments: [2, 3, 4])
    func everyCollective(ranks: Int) throws {
        let launch = try Launcher.mpirun(ranks, "mpi-checks", ["collectives"])
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect(launch.lines == collectiveNames.map { "ok \($0)" })
    }

    /// pp dp cp tp ep on 4 and 8 ranks: every axis and combination is exercised.
    @Test(arguments: [(4, [1, 4, 1, 1, 1]), (4, [1, 2, 1, 2, 1]), (4, [2, 1, 1, 2, 1]), (4, [1, 1, 2, 2, 1]),
                      (4, [4, 1, 1, 1, 1]), (4, [1, 2, 2, 1, 4]), (8, [2, 2, 1, 2, 1]), (8, [2, 1, 2, 2, 2])])
    func meshLayout(ranks: Int, degrees: [Int]) throws {
        let launch = try Launcher.mpirun(ranks, "mpi-checks", ["mesh"] + degrees.map(String.init))
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect(launch.lines.count == 10)
        #expect(launch.lines.allSatisfy { $0.hasPrefix("ok mesh-") }, "\(launch.standardOutput)")
    }

    /// Expert parallelism's exchange (`ExpertDispatch`): counts then rows to each expert's
    /// owner, expert-major on arrival, and back home in the sender's expert order.
    @Test(arguments: [1, 2, 3, 4])
    func expertDispatchAndCombine(ranks: Int) throws {
        let launch = try Launcher.mpirun(ranks, "mpi-checks", ["expert-dispatch"])
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect(launch.lines == ["ok expert-dispatch"], "\(launch.standardOutput)")
    }

    @Test func oneRankFailingAloneEndsTheJobWithItsReasonOnce() throws {
        let launch = try Launcher.mpirun(4, "mpi-checks", ["fail-one-rank"], timeout: 60)
        #expect(launch.status != 0)
        let reason = "meshlm: error (rank 3): rank 3 could not open shard-0007.h5"
        #expect(launch.standardError.components(separatedBy: reason).count == 2, "\(launch.standardError)")
    }

    @Test func aFailureSeenByManyRanksIsPrintedOnce() throws {
        let launch = try Launcher.mpirun(4, "mpi-checks", ["fail-collectively"], timeout: 60)
        #expect(launch.status != 0)
        #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
        #expect(launch.standardError.contains("meshlm: error (rank 1): bad input seen by rank 1\n"))
    }
}
