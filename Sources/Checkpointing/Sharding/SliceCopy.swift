/// Copies the elements of one box of a tensor from a buffer holding one box to a buffer
/// holding another (both row-major), run by contiguous run.
enum SliceCopy {
    /// Copies `region` (inside both `source` and `destination` boxes) from `from` to `to`.
    static func copy(
        _ region: TensorSlice, from: UnsafeRawBufferPointer, source: TensorSlice,
        to: UnsafeMutableRawBufferPointer, destination: TensorSlice, elementSize: Int
    ) {
        let rank = region.shape.count
        guard region.elementCount > 0 else { return }
        guard rank > 0 else {
            to.baseAddress!.copyMemory(from: from.baseAddress!, byteCount: elementSize)
            return
        }
        // The innermost dimensions the region spans in full in both boxes form one run.
        var runStart = rank - 1
        while runStart > 0, region.shape[runStart] == source.shape[runStart], region.shape[runStart] == destination.shape[runStart] {
            runStart -= 1
        }
        let runBytes = region.shape[runStart...].reduce(elementSize, *)
        let sourceStrides = strides(source.shape, elementSize)
        let destinationStrides = strides(destination.shape, elementSize)
        // An odometer over the dimensions before the run.
        var index = [Int](repeating: 0, count: runStart)
        while true {
            var sourceOffset = 0
            var destinationOffset = 0
            for dimension in 0...runStart {
                let position = (dimension < runStart ? index[dimension] : 0) + region.offset[dimension]
                sourceOffset += (position - source.offset[dimension]) * sourceStrides[dimension]
                destinationOffset += (position - destination.offset[dimension]) * destinationStrides[dimension]
            }
            (to.baseAddress! + destinationOffset).copyMemory(from: from.baseAddress! + sourceOffset, byteCount: runBytes)
            var dimension = runStart - 1
            while dimension >= 0 {
                index[dimension] += 1
                if index[dimension] < region.shape[dimension] { break }
                index[dimension] = 0
                dimension -= 1
            }
            if dimension < 0 { return }
        }
    }

    /// Row-major strides in bytes.
    private static func strides(_ shape: [Int], _ elementSize: Int) -> [Int] {
        var result = [Int](repeating: elementSize, count: shape.count)
        for dimension in stride(from: shape.count - 2, through: 0, by: -1) {
            result[dimension] = result[dimension + 1] * shape[dimension + 1]
        }
        return result
    }
}
