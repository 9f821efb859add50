#!/bin/sh
# neon_under_qemu.sh SOURCE BUILD — cross-builds the engine and engine_tests for aarch64 and runs
# them under qemu-user: the NEON kernels against the scalar references, and the golden tests at
# the neon level and forced to scalar. Exit 77 (skipped) without the cross compiler or qemu.
set -eu
source_dir="$1"
build_dir="$2"
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "skipped: no $tool (scripts/install-deps installs it)"; exit 77; }
done
cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$source_dir/cmake/aarch64-linux-gnu.cmake" -DWOOLLY_ENGINE_ONLY=ON >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target engine_tests
tests="$build_dir/tests/engine_tests"
# ELF e_machine (2 bytes at offset 18) is 183 for AArch64.
[ "$(od -An -tu2 -j18 -N2 "$tests" | tr -d ' ')" = 183 ] || { echo "not an aarch64 binary: $tests"; exit 1; }
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
qemu-aarch64 "$tests" -tc="an unsupported forced level is refused" # the default level is neon
WOOLLY_KERNELS=neon qemu-aarch64 "$tests"
WOOLLY_KERNELS=scalar qemu-aarch64 "$tests" -tc="*golden*,*llama.cpp*,*bundled*,*quantization*"
