#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds everything
# (the tests start the `ckpt` executable), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh --test
swift build --build-tests
swift test --skip-build "$@"
