#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds everything
# (the tests start the `ckpt` executable), runs every test, then builds the DocC documentation
# of the library's modules, where any warning (a broken link, an undocumented parameter) fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh --test
swift build --build-tests
swift test --skip-build "$@"
swift package generate-documentation --warnings-as-errors \
  --target Checkpointing --target CheckpointingS3 --target CheckpointingMPI >/dev/null
echo "documentation: built with no warnings"
