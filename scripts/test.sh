#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds everything
# (the tests start the `ckpt` executable), then runs every test, then every fuzz target for a
# few seconds (scripts/fuzz.sh), so that the harness keeps building and the parsers keep
# surviving their seeds. Arguments go to `swift test` (`--filter Suite`) and skip the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh --test
swift build --build-tests
swift test --skip-build "$@"
if [ $# -eq 0 ]; then
  scripts/fuzz.sh all 3
fi
