import Foundation
import Runtime
import Tensors
import TensorComparison
import Testing

/// `NF4Matrix` against bitsandbytes' `quantize_4bit(quant_type="nf4", blocksize=64,
/// compress_statistics=True)` on the matrices of `nf4_golden.h5` (tools/golden/make_nf4_fixture.py):
/// the same 4-bit codes and 8-bit scale codes, and the offset, group scales and dequantized values
/// within an ulp or two (see below).
@Suite struct NF4ParityTests {
    static func fixture() throws -> HDF5File {
        let path = try #require(Bundle.module.path(forResource: "nf4_golden", ofType: "h5", inDirectory: "Fixtures"),
                                "Fixtures/nf4_golden.h5 is missing: run tools/golden/make_nf4_fixture.py")
        return try HDF5File.open(path)
    }

    @Test func tablesMatchBitsandbytes() throws {
        let file = try Self.fixture()
        expectSameBits(NF4Matrix.codes, try file.read(Float.self, dataset: "nf4_code"), "NF4 codes")
        expectSameBits(NF4Matrix.scaleCodes, try file.read(Float.self, dataset: "dynamic_map"), "dynamic 8-bit map")
    }

    @Test(arguments: ["normal", "wide", "tail", "zeros"])
    func quantizationMatchesBitsandbytes(matrix name: String) throws {
        let file = try Self.fixture()
        let shape = try file.shape(of: name + "/weight")
        let weight = try file.read(Float.self, dataset: name + "/weight")
        let matrix = weight.withUnsafeBufferPointer { NF4Matrix(quantizing: $0.baseAddress!, rowCount: shape[0], columnCount: shape[1]) }
        let packed = try file.read(UInt8.self, dataset: name + "/packed")
        let codes: [Float] = (0..<matrix.count).map { index in
            let byte = packed[index / 2]
            return Float(index & 1 == 0 ? byte >> 4 : byte & 0x0F)
        }
        expectSameBits((0..<matrix.count).map { Float(matrix.code($0)) }, codes, "\(name): 4-bit codes")
        let scaleCodes = try file.read(UInt8.self, dataset: name + "/absmax_codes").map(Float.init)
        expectSameBits((0..<matrix.blockCount).map { Float(matrix.scaleCode($0)) }, scaleCodes, "\(name): 8-bit scale codes")
        // The offset is the mean of the block absmaxes: torch sums f32 in its own vectorized
        // order, MeshLM in f64, so the last bit may differ, and with it â and x̂ (by an ulp).
        expectClose([matrix.scaleOffset], try file.read(Float.self, dataset: name + "/offset"), relativeTolerance: 3e-7,
                    "\(name): offset")
        let groupScales = try file.read(Float.self, dataset: name + "/group_scales")
        expectClose((0..<groupScales.count).map(matrix.groupScale), groupScales, relativeTolerance: 1e-6, "\(name): group scales")
        expectClose(matrix.dequantized(), try file.read(Float.self, dataset: name + "/dequantized"), relativeTolerance: 3e-7,
                    "\(name): dequantized")
    }
}
