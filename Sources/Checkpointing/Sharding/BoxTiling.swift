extension TensorSlice {
    /// Why `boxes` do not tile a tensor of `shape` exactly, or `nil` when they do: every box
    /// lies inside the tensor, no two share an element, and together they cover every element.
    ///
    /// Boxes are swept in order of their start along the first dimension, so only boxes whose
    /// row ranges meet are compared: a tensor split into row runs over thousands of ranks costs
    /// a sort, not every pair.
    static func tilingProblem(_ boxes: [TensorSlice], of shape: [Int]) -> String? {
        var total = 1
        for dimension in shape {
            let (product, overflow) = total.multipliedReportingOverflow(by: dimension)
            guard dimension >= 0, !overflow else { return "its shape \(shape) is not a shape a tensor can have" }
            total = product
        }
        // Each box lies inside the tensor before anything is counted, so no count can overflow.
        var covered = 0
        for box in boxes {
            guard box.globalShape == shape else { return "a box of \(box.globalShape) is given for a tensor of \(shape)" }
            if let problem = box.problem() { return "box \(box) \(problem)" }
            let (sum, overflow) = covered.addingReportingOverflow(box.elementCount)
            guard !overflow else { return "its boxes hold more elements than can be counted, so some overlap" }
            covered = sum
        }
        if shape.isEmpty {
            // A 0-dim tensor: one element, one box.
            guard boxes.count <= 1 else { return "\(boxes.count) boxes each hold its only element" }
        } else {
            let order = boxes.indices.filter { boxes[$0].elementCount > 0 }.sorted { boxes[$0].offset[0] < boxes[$1].offset[0] }
            var active: [TensorSlice] = []
            for index in order {
                let box = boxes[index]
                active.removeAll { $0.offset[0] + $0.shape[0] <= box.offset[0] }
                if let other = active.first(where: { $0.intersection(box) != nil }) {
                    return "boxes \(other) and \(box) overlap"
                }
                active.append(box)
            }
        }
        guard covered == total else {
            return "its boxes cover \(covered) of its \(total) elements: part of the tensor is missing"
        }
        return nil
    }
}
