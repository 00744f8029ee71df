#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack: Debian's libxxhash-dev
# (the native format's checksum), libisal-dev (ISA-L's fast CRC-32 for zip records), the codec
# libraries (zlib1g-dev for gzip,
# libzstd-dev, liblz4-dev, liblzma-dev for xz and lzma, libbz2-dev, liblzo2-dev for lzop),
# Open MPI (libopenmpi-dev for the CheckpointingMPI module, openmpi-bin for mpirun, which the
# MPI tests and multi-process runs start) and pkg-config; with --test, also Python's safetensors and numpy, which the interop tests use as
# the reference reader, huggingface_hub (its shard-size parser and splitting rule), and the compression tools (zstd lz4 lzop xz-utils bzip2 gzip tar) whose
# own tests check the files we write. Installs only what is missing.
set -euo pipefail

missing=()
[ -f /usr/include/xxhash.h ] || missing+=(libxxhash-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/isa-l/crc.h ] || missing+=(libisal-dev)
[ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
[ -f /usr/include/lz4frame.h ] || missing+=(liblz4-dev)
[ -f /usr/include/lzma.h ] || missing+=(liblzma-dev)
[ -f /usr/include/bzlib.h ] || missing+=(libbz2-dev)
[ -f /usr/include/lzo/lzo1x.h ] || missing+=(liblzo2-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# Without pkg-config yet, this asks for libopenmpi-dev, which apt then finds installed or installs.
pkg-config --exists ompi-c 2>/dev/null || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
if [ "${1:-}" = "--test" ]; then
  command -v zstd >/dev/null 2>&1 || missing+=(zstd)
  command -v lz4 >/dev/null 2>&1 || missing+=(lz4)
  command -v lzop >/dev/null 2>&1 || missing+=(lzop)
  { command -v xz && command -v lzma; } >/dev/null 2>&1 || missing+=(xz-utils)
  command -v bzip2 >/dev/null 2>&1 || missing+=(bzip2)
  command -v gzip >/dev/null 2>&1 || missing+=(gzip)
  command -v tar >/dev/null 2>&1 || missing+=(tar)
fi
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
  # The Hugging Face tests: huggingface_hub's own size parser and shard-splitting rule (no torch needed).
  if ! python3 -c "import huggingface_hub" 2>/dev/null; then
    echo "installing Python package huggingface_hub" >&2
    python3 -m pip install --quiet --disable-pip-version-check huggingface_hub
  fi
  # The S3 tests: moto's S3 server on loopback, and botocore as the reference SigV4 signer.
  if ! python3 -c "import moto.server, flask, flask_cors, boto3, botocore" 2>/dev/null; then
    echo "installing Python packages moto[server] botocore" >&2
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]" botocore
  fi
fi
