#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds everything
# (the tests start the `ckpt` executable), runs every test, then builds the DocC documentation
# of the library's modules, where any warning (a broken link, an undocumented parameter) fails.
# Last, every fuzz target runs for a few seconds (scripts/fuzz.sh), so that the harness keeps
# building and the parsers keep surviving their seeds; arguments (`--filter Suite`, passed to
# `swift test`) skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh --test
swift build --build-tests
swift test --skip-build "$@"
log=$(mktemp)
if ! swift package generate-documentation --warnings-as-errors \
  --target Checkpointing --target CheckpointingS3 --target CheckpointingMPI >"$log" 2>&1; then
  grep -E "^(warning|error)" -A8 "$log" >&2 || cat "$log" >&2
  echo "documentation: DocC reported the problems above" >&2
  exit 1
fi
echo "documentation: built with no warnings"
if [ $# -eq 0 ]; then
  scripts/fuzz.sh all 3
fi
