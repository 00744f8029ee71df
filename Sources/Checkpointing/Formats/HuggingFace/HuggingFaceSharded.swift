/// Hugging Face's sharded safetensors layout: the names, sizes and splitting rule that
/// `save_pretrained` and `huggingface_hub.save_torch_state_dict` use.
///
/// A checkpoint is a folder of ordinary safetensors files, `model-00001-of-00003.safetensors`
/// and so on (1-based, five digits), and an index, `model.safetensors.index.json`, whose
/// `weight_map` names the shard that holds each tensor. See <doc:HuggingFaceCheckpoints>.
public enum HuggingFaceSharded {
    /// The index's name in a folder written by `save_pretrained`.
    public static let indexName = "model.safetensors.index.json"
    /// What every index name ends with; the part before it is the shards' prefix (`model`).
    public static let indexSuffix = ".safetensors.index.json"
    /// The prefix of the shards' names when an index's name gives none.
    public static let defaultPrefix = "model"
    /// The largest shard `save_pretrained` writes unless told otherwise: 5 GB (decimal).
    public static let defaultMaxShardSize = 5_000_000_000

    /// The name of shard `number` (1-based) of `count`: `model-00002-of-00005.safetensors`.
    public static func shardName(prefix: String = defaultPrefix, number: Int, of count: Int) -> String {
        "\(prefix)-\(zeroPadded(number))-of-\(zeroPadded(count)).safetensors"
    }

    private static func zeroPadded(_ value: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// The prefix of a shard's name (`model` for `model-00002-of-00005.safetensors`), or `nil`
    /// when `name` is not named as a shard.
    static func shardPrefix(of name: String) -> String? {
        guard name.hasSuffix(".safetensors") else { return nil }
        let parts = name.dropLast(".safetensors".count).split(separator: "-", omittingEmptySubsequences: false)
        func isNumber(_ part: Substring) -> Bool { part.count >= 5 && part.allSatisfy { $0.isASCII && $0.isNumber } }
        guard parts.count >= 4, parts[parts.count - 2] == "of", isNumber(parts[parts.count - 3]), isNumber(parts[parts.count - 1])
        else { return nil }
        return parts.dropLast(3).joined(separator: "-")
    }

    /// Parses a size as `huggingface_hub` does (`parse_size_to_int`): a number, whole or
    /// decimal, then `KB`, `MB`, `GB` or `TB` in any case, decimal (`"40KB"` is 40,000 bytes,
    /// `"1.5GB"` 1,500,000,000), rounded down to a whole byte with the same floating-point
    /// arithmetic, so every size it accepts means the same here. Also accepted: a plain count
    /// of bytes (`"40000"`), and the binary units `KiB`, `MiB`, `GiB`, `TiB` (`"2GiB"` is
    /// 2,147,483,648), which `huggingface_hub` refuses and nothing can mistake for decimal.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) for anything else, or a size below one byte.
    public static func parseSize(_ text: String) throws(CheckpointError) -> Int {
        let trimmed = text.trimmingWhitespace
        let units: [(suffix: String, bytes: Double)] = [
            ("KIB", 1024), ("MIB", 1024 * 1024), ("GIB", 1024 * 1024 * 1024), ("TIB", 1024 * 1024 * 1024 * 1024),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ]
        func refuse(_ why: String) -> CheckpointError {
            CheckpointError(
                .invalidArgument,
                "\"\(text)\" is not a shard size (\(why)); write a number of bytes or a number with KB, MB, GB or TB (decimal, as Hugging Face counts: \"5GB\", \"500MB\", \"1.5GB\"), or KiB, MiB, GiB, TiB")
        }
        let upper = trimmed.uppercased()
        guard let unit = units.first(where: { upper.hasSuffix($0.suffix) }) else {
            guard !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw refuse("no unit recognised")
            }
            guard let bytes = Int(trimmed), bytes >= 1, bytes < 1 << 62 else { throw refuse("it must be from 1 byte to 4 EB") }
            return bytes
        }
        let digits = trimmed.dropLast(unit.suffix.count).trimmingWhitespace
        // Plain decimals only: no sign, exponent, "inf" or "nan", which Python's float() would take.
        guard !digits.isEmpty, digits.allSatisfy({ $0 == "." || ($0.isASCII && $0.isNumber) }),
            digits.filter({ $0 == "." }).count <= 1, digits != ".", let value = Double(digits)
        else { throw refuse("no number before the unit") }
        let bytes = value * unit.bytes
        guard bytes >= 1, bytes < 0x1p62 else { throw refuse("it must be from 1 byte to 4 EB") }
        return Int(bytes)
    }

    /// Splits tensors of the given sizes, in order, into shards, by `huggingface_hub`'s rule
    /// (`split_state_dict_into_shards_factory`, which `save_pretrained` uses): each tensor joins
    /// the shard being filled unless it would take it past `maxShardSize`, which then closes and
    /// a new one starts; a tensor larger than `maxShardSize` gets a shard of its own at once,
    /// and the shard being filled stays open for the tensors after it (so the big tensor's
    /// shard comes first).
    ///
    /// - Returns: The shards in file order, each the indices of its tensors in `sizes`, in order.
    static func split(sizes: [Int], maxShardSize: Int) -> [[Int]] {
        var shards: [[Int]] = []
        var current: [Int] = []
        var currentSize = 0
        for (index, size) in sizes.enumerated() {
            if size > maxShardSize {
                shards.append([index])
                continue
            }
            if currentSize + size > maxShardSize {
                shards.append(current)
                current = []
                currentSize = 0
            }
            current.append(index)
            currentSize += size
        }
        if !current.isEmpty { shards.append(current) }
        return shards
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and line breaks.
    var trimmingWhitespace: Substring {
        let text = Substring(self)
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
            let last = text.lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return text[first...last]
    }
}
