#!/usr/bin/env bash
# gpu_bundle.sh - build here and pack what a bare GPU machine needs to run
# zeroflow: the binaries (built for x86-64-v3, not this CPU) and the shared
# libraries they use that a CUDA image lacks (ZeroMQ, msgpack, LZ4, jansson,
# PCRE2, OpenBLAS and their dependencies).  Never glibc's, the CUDA
# libraries' or NCCL (PyTorch's wheel carries it there), nor Open MPI's: the
# GPU image has Open MPI 4.1 (libmpi.so.40, the same ABI), and a copy here
# would mix with its launcher and plugins.
#
#   scripts/gpu_bundle.sh [DIR]          (default .gpu-bundle, git-ignored)
# Then, on the GPU machine, from the repository root:
#   source scripts/gpu_bundle_env.sh DIR
#   tests/gpu/test_cuda_device.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu-bundle}
make -s clean
make -s build ARCH_FLAGS=-march=x86-64-v3
rm -rf "$out"
mkdir -p "$out/lib"
for b in bin/* bin/tests/probe_* bin/gpu/* bin/bench/*; do
  [ -f "$b" ] && [ -x "$b" ] || continue
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libpthread|librt|libdl|libresolv|ld-linux[^/]*|libcudart|libcuda|libcublas[^/]*|libnvidia[^/]*|libnccl|libmpi|libopen-(rte|pal)|libpmix|libhwloc|libevent[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
mkdir -p "$out/bin/tests" "$out/bin/gpu" "$out/bin/bench"
# the daemons, the GPU tests, the benchmarks and (the GPU machine has
# PyTorch) the reference-test probes, without debug info
for b in bin/* bin/gpu/* bin/bench/* bin/tests/probe_*; do [ -f "$b" ] && strip -o "$out/$b" "$b"; done
# one compressed file: OpenBLAS alone is 35 MB, and a device call carries 64 MB at most
nlib=$(ls "$out/lib" | wc -l)
tar cJf "$out.tar.xz" -C "$out" bin lib
rm -rf "$out"; mkdir -p "$out"; mv "$out.tar.xz" "$out/bundle.tar.xz"
echo "bundle: $out/bundle.tar.xz ($(du -h "$out/bundle.tar.xz" | cut -f1)): binaries (x86-64-v3) and $nlib libraries"
