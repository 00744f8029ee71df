#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes, with libFuzzer, AddressSanitizer and
# LeakSanitizer (the harness is the package in Fuzz/; each target is one parser).
#
#   scripts/fuzz.sh --list                   the targets and what each one parses
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   build, then run TARGET (default: all, one after
#                                            another) for SECONDS each (default: 60)
#
# A target fails on a crash or trap, a leak, an input slower than 1 s (-timeout), an allocation
# larger than the target's limit (-malloc_limit_mb: the parser's own bound, see --list) or an
# RSS over 2 GiB; the other targets still run, and the script exits 1 at the end. A property
# check of the harness (a stream in pieces must decode as it does whole, a tree that was read
# must save and read back the same, ...) fails as a crash. The failing input is kept in
# .build-fuzz/findings/; run it again alone with
#
#   CHECKPOINTING_FUZZ_TARGET=TARGET .build-fuzz/release/checkpointing-fuzz FILE
#
# and turn it into a regression test (Tests/CheckpointingTests/FuzzRegressionTests.swift).
#
# FUZZ_FLAGS adds libFuzzer flags: FUZZ_FLAGS=-runs=1000000 stops each target after a million
# inputs (or SECONDS, whichever comes first).
#
# Everything lives in .build-fuzz/ (git-ignored): the instrumented build, each target's corpus
# (corpus/TARGET, grown by every run and kept), and its seeds (seeds/TARGET, made afresh on every
# run from Tests/Fixtures, this library's writers and the command-line compressors).
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-fuzz
binary=$scratch/release/checkpointing-fuzz

build_once() {
  swift build --package-path Fuzz --scratch-path "$scratch" -c release \
    --sanitize=fuzzer --sanitize=address \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
    -Xswiftc -assert-config -Xswiftc Debug >"$scratch/build.log" 2>&1
}

build() {
  mkdir -p "$scratch"
  echo "fuzz.sh: building the instrumented harness in $scratch" >&2
  # SwiftPM's --sanitize=fuzzer links libFuzzer (which brings main) but instruments nothing,
  # hence -sanitize=fuzzer for the compiler too. -enable-testing opens the parsers' internal
  # entry points to the harness; -assert-config Debug keeps the standard library's bounds
  # checks on unsafe buffers, which an optimized build drops.
  # A build plan kept from before source files moved can name files that are gone; SwiftPM then
  # fails instead of planning again, so a failed build is retried once without the kept plan.
  if ! build_once && ! { rm -f "$scratch/release.yaml" "$scratch/build.db"; build_once; }; then
    grep -v "warning: Cannot export local symbol" "$scratch/build.log" >&2
    echo "fuzz.sh: the harness did not build (log: $scratch/build.log)" >&2
    exit 1
  fi
}

# Runs the harness outside libFuzzer's loop (listing, seeds), without leak checks: its seeds live
# until it exits.
harness() {
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "$binary" "$@"
}

list() {
  CHECKPOINTING_FUZZ_LIST=1 harness
}

# Seeds that need the command-line tools: streams and archives written by other implementations,
# with the options this library's writers never use.
tool_seeds() {
  local target=$1 out=$2 work
  work=$(mktemp -d)
  cp Tests/Fixtures/safetensors/all_dtypes.safetensors "$work/input"
  printf 'a checkpoint, a checkpoint, a checkpoint\n' >"$work/text"
  case $target in
    gzip)
      gzip -c -1 "$work/input" >"$out/tool-1.gz"
      gzip -c -9 -n "$work/text" >"$out/tool-9.gz"
      cat "$out/tool-1.gz" "$out/tool-9.gz" >"$out/tool-two-members.gz" ;;
    bzip2)
      bzip2 -c -1 "$work/input" >"$out/tool-1.bz2"
      bzip2 -c -9 "$work/text" >"$out/tool-9.bz2"
      cat "$out/tool-1.bz2" "$out/tool-9.bz2" >"$out/tool-two-streams.bz2" ;;
    xz)
      xz -c -0 "$work/input" >"$out/tool-0.xz"
      xz -c -3 --check=sha256 "$work/text" >"$out/tool-sha256.xz"
      xz -c -1 --check=none "$work/text" >"$out/tool-nocheck.xz"
      xz -c -1 --block-size=512 "$work/input" >"$out/tool-blocks.xz"
      xz -c -1 --delta=dist=4 --lzma2=preset=1 "$work/input" >"$out/tool-delta.xz"
      cat "$out/tool-0.xz" "$out/tool-nocheck.xz" >"$out/tool-two-streams.xz" ;;
    lzma)
      lzma -c -0 "$work/input" >"$out/tool-0.lzma"
      lzma -c -3 "$work/text" >"$out/tool-3.lzma" ;;
    zstd)
      zstd -q -c -1 "$work/input" >"$out/tool-1.zst"
      zstd -q -c -19 --no-check "$work/text" >"$out/tool-19.zst"
      zstd -q -c -3 --check --no-content-size <"$work/input" >"$out/tool-stream.zst"
      cat "$out/tool-1.zst" "$out/tool-19.zst" >"$out/tool-two-frames.zst" ;;
    lz4)
      lz4 -q -c -1 "$work/input" >"$out/tool-1.lz4"
      lz4 -q -c -9 --content-size -BX -BD "$work/input" >"$out/tool-9-checked.lz4"
      lz4 -q -c --no-frame-crc "$work/text" >"$out/tool-nocrc.lz4"
      lz4 -q -c -l "$work/text" >"$out/tool-legacy.lz4"
      cat "$out/tool-1.lz4" "$out/tool-nocrc.lz4" >"$out/tool-two-frames.lz4" ;;
    lzop)
      lzop -q -c -1 "$work/input" >"$out/tool-1.lzo"
      lzop -q -c -9 --crc32 "$work/text" >"$out/tool-9-crc32.lzo"
      lzop -q -c -F "$work/text" >"$out/tool-nochecksum.lzo"
      cat "$out/tool-1.lzo" "$out/tool-nochecksum.lzo" >"$out/tool-two-files.lzo" ;;
    tar)
      mkdir -p "$work/tree/run/$(printf 'n%.0s' {1..120})"
      cp "$work/text" "$work/tree/run/$(printf 'n%.0s' {1..120})/checkpoint.safetensors"
      cp "$work/text" "$work/tree/composer_states.pt"
      local format
      for format in gnu pax ustar v7; do
        tar -C "$work/tree" --format=$format -cf "$out/tool-$format.tar" composer_states.pt 2>/dev/null || true
      done
      tar -C "$work/tree" --format=gnu -cf "$out/tool-gnu-long.tar" run
      tar -C "$work/tree" --format=pax -cf "$out/tool-pax-long.tar" run ;;
  esac
  rm -rf "$work"
}

seed() {
  local target=$1 out=$scratch/seeds/$1
  rm -rf "$out"
  mkdir -p "$out"
  CHECKPOINTING_FUZZ_TARGET=$target CHECKPOINTING_FUZZ_SEEDS=$out CHECKPOINTING_FUZZ_FIXTURES=Tests/Fixtures harness >/dev/null
  tool_seeds "$target" "$out"
}

# Runs one target; prints its final figures; returns libFuzzer's status.
run() {
  local target=$1 seconds=$2 malloc_limit=$3 log status
  mkdir -p "$scratch/corpus/$target" "$scratch/findings" "$scratch/logs"
  seed "$target"
  log=$scratch/logs/$target.log
  set +e
  # Swift's own crash reporter is off, so that libFuzzer's handler reports a crash at once.
  CHECKPOINTING_FUZZ_TARGET=$target SWIFT_BACKTRACE=enable=no \
    ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}" LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan-suppressions.txt:${LSAN_OPTIONS:-}" \
    "$binary" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb="$malloc_limit" \
    -artifact_prefix="$scratch/findings/$target-" -print_final_stats=1 ${FUZZ_FLAGS:-} \
    "$scratch/corpus/$target" "$scratch/seeds/$target" >"$log" 2>&1
  status=$?
  set -e
  # The last status line (executions, coverage, features, corpus) and the totals.
  local last runs
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  printf '%-20s %s  (%s runs)\n' "$target" "${last:-no status line}" "${runs:-?}"
  if [ $status -ne 0 ]; then
    echo "fuzz.sh: $target FAILED (status $status); the end of $log:" >&2
    grep -E 'ERROR|SUMMARY|fuzz property|Fatal error|Test unit written|artifact' "$log" | head -20 >&2 || true
  fi
  return $status
}

case "${1:-}" in
  -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

build
targets=$(list)
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "$targets" | awk -F'\t' '{ printf "%-20s %s (malloc limit %s MiB)\n", $1, $3, $2 }'
  exit 0
fi

wanted=${1:-all}
seconds=${2:-60}
failed=()
ran=0
while IFS=$'\t' read -r name malloc_limit _; do
  [ "$wanted" = all ] || [ "$wanted" = "$name" ] || continue
  ran=$((ran + 1))
  run "$name" "$seconds" "$malloc_limit" || failed+=("$name")
done <<<"$targets"

if [ $ran -eq 0 ]; then
  echo "fuzz.sh: no target named \"$wanted\"; scripts/fuzz.sh --list shows them" >&2
  exit 64
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in $scratch/findings/)" >&2
  exit 1
fi
