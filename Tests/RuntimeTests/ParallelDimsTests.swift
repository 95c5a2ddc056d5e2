import Runtime
import Testing

@Suite struct ParallelDimsTests {
    @Test func megatronRankOrder() throws {
        let dims = try ParallelDims(worldSize: 16, pipelineDegree: 2, dataDegree: 2, contextDegree: 2, tensorDegree: 2)
        // tp fastest, then cp, dp, pp.
        #expect(dims.coordinates(ofRank: 1).tensor == 1)
        #expect(dims.coordinates(ofRank: 2).context == 1)
        #expect(dims.coordinates(ofRank: 4).data == 1)
        #expect(dims.coordinates(ofRank: 8).pipeline == 1)
        for rank in 0..<16 {
            let c = dims.coordinates(ofRank: rank)
            #expect(dims.rank(pipeline: c.pipeline, data: c.data, context: c.context, tensor: c.tensor) == rank)
        }
        #expect(dims.members(of: .tensor, withRank: 5) == [4, 5])
        #expect(dims.members(of: .context, withRank: 5) == [5, 7])
        #expect(dims.members(of: .data, withRank: 5) == [1, 5])
        #expect(dims.members(of: .pipeline, withRank: 5) == [5, 13])
        #expect(dims.members(of: .dataContext, withRank: 5) == [1, 3, 5, 7])
        #expect(dims.members(of: .modelParallel, withRank: 5) == [4, 5, 12, 13])
    }

    @Test func expertGroupsAreCarvedFromDataContext() throws {
        let dims = try ParallelDims(worldSize: 8, dataDegree: 4, contextDegree: 2, expertDegree: 4)
        #expect(dims.members(of: .expert, withRank: 0) == [0, 1, 2, 3])
        #expect(dims.members(of: .expert, withRank: 6) == [4, 5, 6, 7])
        #expect(dims.members(of: .expertData, withRank: 1) == [1, 5])
    }

    @Test func dataDegreeIsInferred() throws {
        let dims = try ParallelDims(worldSize: 8, pipelineDegree: 2, tensorDegree: 2)
        #expect(dims.dataDegree == 2)
        #expect(dims.description == "pp 2 × dp 2 × cp 1 × tp 2 = 8 ranks")
    }

    @Test func impossibleMeshesListEveryFactor() {
        func message(_ make: () throws -> ParallelDims) -> String {
            do { _ = try make(); return "no error" } catch { return "\(error)" }
        }
        #expect(message { try ParallelDims(worldSize: 6, pipelineDegree: 2, dataDegree: 2, tensorDegree: 2) }
                == "world size 6 is not pp 2 × dp 2 × cp 1 × tp 2 = 8")
        #expect(message { try ParallelDims(worldSize: 6, pipelineDegree: 4) }
                == "world size 6 is not divisible by pp 4 × cp 1 × tp 1 = 4, so no data-parallel degree dp fits")
        #expect(message { try ParallelDims(worldSize: 8, dataDegree: 2, contextDegree: 2, tensorDegree: 2, expertDegree: 3) }
                == "expert parallel degree ep 3 must divide dp 2 × cp 2 = 4")
        #expect(message { try ParallelDims(worldSize: 4, tensorDegree: 0) }
                == "parallel degree tp is 0; every degree must be at least 1")
    }
}
