import Checkpointing
import Foundation
import Testing

/// Python's standard library (`zipfile`, `pickletools`) as an independent judge of the `.pt`
/// files this library writes: what `torch.load(weights_only=True)` needs of their structure.
public enum PythonTorchZip {
    /// For each path, a list of problems (empty when the file is sound): entries stored and
    /// 64-byte aligned, CRC-32s right (`testzip`), `data.pkl` a protocol-2 pickle using only the
    /// opcodes and globals torch's weights-only loader accepts (plus Composer's extras), and the
    /// records torch's reader needs present.
    public static let script = """
        import json, pickletools, struct, sys, zipfile
        OPCODES = {"PROTO", "STOP", "MARK", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NEWTRUE",
                   "NEWFALSE", "NONE", "BINUNICODE", "SHORT_BINSTRING", "EMPTY_TUPLE", "TUPLE1", "TUPLE2",
                   "TUPLE3", "TUPLE", "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS",
                   "EMPTY_SET", "GLOBAL", "REDUCE", "BUILD", "NEWOBJ", "BINPERSID", "BINPUT", "LONG_BINPUT",
                   "BINGET", "LONG_BINGET"}
        STORAGES = {"DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
                    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage"}
        DTYPES = {"float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64"}
        GLOBALS = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_tensor_v3",
                   "torch.storage UntypedStorage", "_codecs encode", "datetime timedelta",
                   "numpy._core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
        GLOBALS |= {"torch " + s for s in STORAGES} | {"torch " + d for d in DTYPES}
        out = {}
        for path in sys.argv[1:]:
            problems = []
            try:
                raw = open(path, "rb").read()
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                    if bad is not None:
                        problems.append("bad CRC-32 in " + bad)
                    names = archive.namelist()
                    prefix = names[0].split("/")[0]
                    for info in archive.infolist():
                        if info.compress_type != zipfile.ZIP_STORED:
                            problems.append(info.filename + " is compressed")
                        if not info.filename.startswith(prefix + "/"):
                            problems.append(info.filename + " is outside " + prefix)
                        name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
                        start = info.header_offset + 30 + name_length + extra_length
                        if start % 64 != 0:
                            problems.append(info.filename + " starts at %d, not a multiple of 64" % start)
                    pickle = archive.read(prefix + "/data.pkl")
                    if pickle[:2] != b"\\x80\\x02":
                        problems.append("data.pkl is not protocol 2")
                    for opcode, argument, _ in pickletools.genops(pickle):
                        if opcode.name not in OPCODES:
                            problems.append("opcode " + opcode.name)
                        if opcode.name == "GLOBAL" and argument not in GLOBALS:
                            problems.append("global " + argument)
                    for required in ["version", "byteorder"]:
                        if prefix + "/" + required not in names:
                            problems.append("no " + required + " record")
            except Exception as error:
                problems.append("%s: %s" % (type(error).__name__, error))
            out[path] = problems
        print(json.dumps(out))
        """

    /// Checks every `.pt` file under `folder` and records an issue for each problem.
    public static func crossCheck(folder: String) {
        var paths: [String] = []
        let walker = FileManager.default.enumerator(atPath: folder)
        while let relative = walker?.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard name.hasSuffix(".pt"), !name.hasPrefix(".") else { continue }
            paths.append(folder + "/" + relative)
        }
        guard !paths.isEmpty else { return }
        do {
            let output = try runPython(script, paths.sorted())
            let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String]]
            for path in paths {
                guard let problems = report?[path] else {
                    Issue.record("Python did not check \(path)")
                    continue
                }
                for problem in problems { Issue.record("\(path): \(problem)") }
            }
        } catch {
            Issue.record("Python could not check the .pt files in \(folder): \(error)")
        }
    }
}
