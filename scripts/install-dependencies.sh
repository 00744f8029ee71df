#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack: Debian's libxxhash-dev
# (the native format's checksum), zlib1g-dev (CRC-32, gzip) and pkg-config; with --test, also Python's safetensors and
# numpy, which the interop tests use as the reference reader. Installs only what is missing.
set -euo pipefail

missing=()
[ -f /usr/include/xxhash.h ] || missing+=(libxxhash-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--test" ]; then
  if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
    echo "installing Python packages safetensors numpy" >&2
    python3 -m pip install --quiet --disable-pip-version-check safetensors numpy
  fi
  # The S3 tests: moto's S3 server on loopback, and botocore as the reference SigV4 signer.
  if ! python3 -c "import moto.server, flask, flask_cors, boto3, botocore" 2>/dev/null; then
    echo "installing Python packages moto[server] botocore" >&2
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]" botocore
  fi
fi
