public import Foundation
public import Testing

/// Python's standard library (`pickle` with a class-free unpickler, `pickletools`, `zipfile`) as
/// an independent judge of the DCP folders this library writes: what torch's DCP reader needs
/// of their structure.
public enum PythonDCP {
    /// Prints, for each folder, a list of problems (empty when it is sound): `.metadata` a
    /// protocol-4 pickle of only DCP's opcodes and globals (any other global is refused by the
    /// unpickler, which builds stand-ins and runs nothing); every FQN's `planner_data` path
    /// joining back to it; every chunk inside its tensor, no two overlapping, together covering
    /// it; every chunk and value at one storage location, inside its data file, no two sharing
    /// a byte; every location a sound `torch.save` archive (`testzip`, stored entries, a
    /// protocol-2 `data.pkl` of torch's opcodes and globals) whose storage has the chunk's size.
    public static let script = """
        import io, json, math, os, pickle, pickletools, sys, zipfile
        MD = "torch.distributed.checkpoint.metadata"
        META_OPCODES = {"PROTO", "FRAME", "STOP", "MARK", "SHORT_BINUNICODE", "BINUNICODE", "MEMOIZE", "STACK_GLOBAL",
                        "BINGET", "LONG_BINGET", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "SETITEMS", "SETITEM", "APPENDS",
                        "APPEND", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NEWOBJ", "BUILD", "REDUCE", "BININT", "BININT1",
                        "BININT2", "LONG1", "NEWTRUE", "NEWFALSE", "NONE"}
        DTYPES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
                  "int32": 4, "int64": 8, "bool": 1, "complex64": 8, "uint16": 2, "uint32": 4, "uint64": 8,
                  "float8_e4m3fn": 1, "float8_e5m2": 1}
        CLASSES = {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
                   "MetadataIndex", "StorageMeta"}
        ARCHIVE_OPCODES = {"PROTO", "STOP", "MARK", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NEWTRUE",
                           "NEWFALSE", "NONE", "BINUNICODE", "SHORT_BINSTRING", "EMPTY_TUPLE", "TUPLE1", "TUPLE2",
                           "TUPLE3", "TUPLE", "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS",
                           "EMPTY_SET", "GLOBAL", "REDUCE", "BUILD", "NEWOBJ", "BINPERSID", "BINPUT", "LONG_BINPUT",
                           "BINGET", "LONG_BINGET"}
        STORAGE_SIZES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                         "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                         "ComplexFloatStorage": 8}
        ARCHIVE_GLOBALS = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_tensor_v3",
                           "torch.storage UntypedStorage", "_codecs encode", "datetime timedelta",
                           "numpy._core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
        ARCHIVE_GLOBALS |= {"torch " + s for s in STORAGE_SIZES} | {"torch " + d for d in DTYPES}

        class Stand:
            def __setstate__(self, state):
                self.state = state
        kinds = {}
        def stand_in(name):
            if name not in kinds:
                kinds[name] = type(name, (Stand,), {})
            return kinds[name]

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if module == MD and name in CLASSES or (module, name) == ("torch.distributed.checkpoint.filesystem", "_StorageInfo"):
                    return stand_in(name)
                if (module, name) == ("torch", "Size"):
                    return lambda dims=(): tuple(dims)
                if (module, name) == ("torch.serialization", "_get_layout"):
                    return lambda text: text
                if (module, name) == (MD, "_MEM_FORMAT_ENCODING"):
                    return lambda code: code
                if (module, name) == ("pathlib", "PosixPath"):
                    return lambda *parts: "/".join(parts)
                if module == "torch" and name in DTYPES:
                    return "dtype:" + name
                raise ValueError("global %s.%s is not DCP's" % (module, name))

        def kind(value):
            return type(value).__name__

        def check_archive(data, what, problems, storage_bytes=None):
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
                if archive.testzip() is not None:
                    problems.append(what + ": bad CRC-32")
                names = archive.namelist()
                prefix = names[0].split("/")[0]
                for info in archive.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        problems.append(what + ": " + info.filename + " is compressed")
                    if not info.filename.startswith(prefix + "/"):
                        problems.append(what + ": " + info.filename + " is outside " + prefix)
                pickle_bytes = archive.read(prefix + "/data.pkl")
                if pickle_bytes[:2] != b"\\x80\\x02":
                    problems.append(what + ": data.pkl is not protocol 2")
                stored = []
                for opcode, argument, _ in pickletools.genops(pickle_bytes):
                    if opcode.name not in ARCHIVE_OPCODES:
                        problems.append(what + ": data.pkl opcode " + opcode.name)
                    if opcode.name == "GLOBAL":
                        if argument not in ARCHIVE_GLOBALS:
                            problems.append(what + ": data.pkl global " + argument)
                        elif argument.split(" ")[1] in STORAGE_SIZES:
                            stored.append(STORAGE_SIZES[argument.split(" ")[1]])
                if storage_bytes is not None:
                    records = [n for n in names if n.startswith(prefix + "/data/")]
                    if len(records) != 1:
                        problems.append(what + ": %d storage records" % len(records))
                    elif archive.getinfo(records[0]).file_size != storage_bytes:
                        problems.append(what + ": storage of %d bytes, the chunk needs %d" % (archive.getinfo(records[0]).file_size, storage_bytes))
            except Exception as error:
                problems.append("%s: %s: %s" % (what, type(error).__name__, error))

        out = {}
        for folder in sys.argv[1:]:
            problems = []
            try:
                raw = open(os.path.join(folder, ".metadata"), "rb").read()
                if raw[:2] != b"\\x80\\x04":
                    problems.append(".metadata is not protocol 4")
                for opcode, _, _ in pickletools.genops(raw):
                    if opcode.name not in META_OPCODES:
                        problems.append(".metadata opcode " + opcode.name)
                metadata = Restricted(io.BytesIO(raw)).load()
                fields = metadata.state
                planner = fields["planner_data"]
                locations = {}
                for key, info in fields["storage_data"].items():
                    k, v = key.state, info.state
                    offset = k.get("offset")
                    locations[(k["fqn"], None if offset is None else tuple(offset))] = (v["relative_path"], v["offset"], v["length"])
                files = {}
                used = []
                def take(fqn, offset):
                    location = locations.pop((fqn, offset), None)
                    if location is None:
                        problems.append("no storage location for %s %s" % (fqn, offset))
                        return None
                    name, start, length = location
                    if "/" in name or name in (".", ".."):
                        problems.append("data file %r is not a plain name" % name)
                        return None
                    if name not in files:
                        files[name] = open(os.path.join(folder, name), "rb").read()
                    if start < 0 or length <= 0 or start + length > len(files[name]):
                        problems.append("%s %s: bytes %d..%d outside %s (%d bytes)" % (fqn, offset, start, start + length, name, len(files[name])))
                        return None
                    used.append((name, start, start + length, fqn))
                    return files[name][start:start + length]
                for fqn, entry in fields["state_dict_metadata"].items():
                    path = planner.get(fqn)
                    if path is None or ".".join(map(str, path)) != fqn:
                        problems.append("planner_data of %s is %r" % (fqn, path))
                    if kind(entry) == "BytesStorageMetadata":
                        data = take(fqn, None)
                        if data is not None:
                            check_archive(data, fqn, problems)
                        continue
                    if kind(entry) != "TensorStorageMetadata":
                        problems.append("%s is a %s" % (fqn, kind(entry)))
                        continue
                    properties = entry.state["properties"].state
                    dtype = properties[0]
                    if not (isinstance(dtype, str) and dtype.startswith("dtype:")) or properties[1] != "torch.strided":
                        problems.append("%s has properties %r" % (fqn, properties))
                        continue
                    size = entry.state["size"]
                    boxes = []
                    for chunk in entry.state["chunks"]:
                        offsets, sizes = chunk.state["offsets"], chunk.state["sizes"]
                        if len(offsets) != len(size) or any(o < 0 or s < 0 or o + s > d for o, s, d in zip(offsets, sizes, size)):
                            problems.append("%s: chunk %r %r outside %r" % (fqn, offsets, sizes, size))
                        boxes.append((offsets, sizes))
                        data = take(fqn, tuple(offsets))
                        if data is not None:
                            check_archive(data, fqn + " chunk %r" % (tuple(offsets),), problems, math.prod(sizes) * DTYPES[dtype[6:]])
                    for i, (a_off, a_size) in enumerate(boxes):
                        for b_off, b_size in boxes[:i]:
                            if all(max(x, y) < min(x + s, y + t) for x, s, y, t in zip(a_off, a_size, b_off, b_size)) and math.prod(a_size) and math.prod(b_size):
                                problems.append("%s: chunks %r and %r overlap" % (fqn, a_off, b_off))
                    if sum(math.prod(s) for _, s in boxes) != math.prod(size):
                        problems.append("%s: chunks do not cover %r" % (fqn, size))
                if locations:
                    problems.append("storage locations of no entry: %r" % sorted(map(str, locations)))
                used.sort()
                for (n1, s1, e1, f1), (n2, s2, e2, f2) in zip(used, used[1:]):
                    if n1 == n2 and s2 < e1:
                        problems.append("%s and %s share bytes of %s" % (f1, f2, n1))
            except Exception as error:
                problems.append("%s: %s" % (type(error).__name__, error))
            out[folder] = problems
        print(json.dumps(out))
        """

    /// Checks each DCP folder and records an issue for every problem found.
    public static func crossCheck(folders: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let output = try runPython(script, folders)
            let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String]]
            for folder in folders {
                guard let problems = report?[folder] else {
                    Issue.record("Python did not check \(folder)", sourceLocation: sourceLocation)
                    continue
                }
                for problem in problems { Issue.record("\(folder): \(problem)", sourceLocation: sourceLocation) }
            }
        } catch {
            Issue.record("Python could not check the DCP folders: \(error)", sourceLocation: sourceLocation)
        }
    }
}
