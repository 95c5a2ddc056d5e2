import Checkpoint
import Foundation
import Testing

func scratchDirectory(_ tag: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-\(tag)-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The safetensors writer and reader: the layout bytes by hand, dtype conversions against
/// known bit patterns, and bad files named in errors.
@Suite struct SafetensorsTests {
    @Test func layoutIsTheSpecifiedOne() throws {
        let directory = try scratchDirectory("st")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/a.safetensors"
        try Safetensors.write([
            Safetensors.Output(name: "b", shape: [2, 3], dtype: .f32) { [1, 2, 3, 4, 5, -6.5] },
            Safetensors.Output(name: "a", shape: [3], dtype: .bf16) { [1, -2, 0.5] },
        ], metadata: ["format": "pt"], to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect((8 + headerLength) % 8 == 0, "data must start 8-byte aligned")
        #expect(bytes.count == 8 + headerLength + 6 * 4 + 3 * 2)
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        let b = try #require(header["b"] as? [String: Any])
        #expect(b["dtype"] as? String == "F32")
        #expect(b["shape"] as? [Int] == [2, 3])
        #expect(b["data_offsets"] as? [Int] == [0, 24])
        #expect((header["a"] as? [String: Any])?["data_offsets"] as? [Int] == [24, 30])
        #expect((header["__metadata__"] as? [String: String]) == ["format": "pt"])
        // bf16 of 1, -2, 0.5: the high halves of their f32 patterns, little-endian.
        #expect(Array(bytes[(8 + headerLength + 24)...]) == [0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F])
        let file = try SafetensorsFile(path: path)
        #expect(try file.floats(of: "b") == [1, 2, 3, 4, 5, -6.5])
        #expect(try file.floats(of: "a") == [1, -2, 0.5])
        #expect(file.metadata == ["format": "pt"])
    }

    @Test func dtypeConversions() {
        let values: [Float] = [1, -2.75, 65504, 1e-3, 3.14159265, -0.0, 1.00390625, 1.01171875]
        for dtype in SafetensorsDType.allCases {
            let encoded = values.withUnsafeBufferPointer { dtype.encode($0) }
            var decoded = [Float](repeating: .nan, count: values.count)
            encoded.withUnsafeBytes { raw in decoded.withUnsafeMutableBufferPointer { dtype.decode(raw, into: $0) } }
            for (value, back) in zip(values, decoded) {
                let tolerance: Float = dtype == .f32 ? 0 : dtype == .bf16 ? abs(value) / 256 : abs(value) / 2048
                #expect(abs(value - back) <= tolerance, "\(dtype) \(value) → \(back)")
            }
            // Converting what came back is exact: the round trip of import then export is bitwise.
            let again = decoded.withUnsafeBufferPointer { dtype.encode($0) }
            #expect(again == encoded, "\(dtype) is not stable")
        }
        // Ties round to even: 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7.
        let tie = [Float(1.00390625)].withUnsafeBufferPointer { SafetensorsDType.bf16.encode($0) }
        #expect(tie == [0x80, 0x3F])
    }

    @Test func badFilesAreNamed() throws {
        let directory = try scratchDirectory("st-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/m.safetensors"
        try Safetensors.write([Safetensors.Output(name: "w", shape: [4, 4], dtype: .f32) { [Float](repeating: 1, count: 16) }],
                              metadata: [:], to: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try Data(bytes.dropLast(5)).write(to: URL(fileURLWithPath: path))
        #expect { _ = try SafetensorsFile(path: path) } throws: { error in
            let message = "\(error)"
            return message.contains(path) && message.contains("truncated") && message.contains("tensor w")
        }
        bytes[0] = 0xFF
        bytes[5] = 0x7F
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect { _ = try SafetensorsFile(path: path) } throws: { "\($0)".contains("header length") && "\($0)".contains(path) }
        #expect { _ = try SafetensorsFile(path: directory + "/none.safetensors") } throws: { "\($0)".contains("none.safetensors") }
        // A wrong count of values is refused before anything is renamed into place.
        #expect { try Safetensors.write([Safetensors.Output(name: "x", shape: [3], dtype: .f32) { [1, 2] }], metadata: [:],
                                        to: directory + "/x.safetensors") } throws: { "\($0)".contains("tensor x") }
        #expect(!FileManager.default.fileExists(atPath: directory + "/x.safetensors"))
    }
}
