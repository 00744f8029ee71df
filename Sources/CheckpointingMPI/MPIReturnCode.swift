import Checkpointing
internal import CMPI

/// Throws if `code`, the return code of the MPI function `function`, is not `MPI_SUCCESS`,
/// with MPI's own description of the error.
///
/// Call it with the MPI lock held (``MPIRuntime/withLock(_:)``): it asks MPI for the message.
func check(_ code: Int32, _ function: String) throws(CheckpointError) {
    guard code != MPI_SUCCESS else { return }
    var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    let described = MPI_Error_string(code, &text, &length) == MPI_SUCCESS
    let message = described ? String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown error"
    throw CheckpointError(.distributed, "\(function) failed: \(message) (MPI error \(code))")
}
