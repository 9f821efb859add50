#!/bin/sh
# neon_under_qemu.sh build|neon|scalar SOURCE BUILD — the NEON kernels under qemu-user: `build`
# cross-builds the engine and engine_tests for aarch64 in BUILD; `neon` runs them all at the
# neon level (the kernels against the scalar references, the golden tests); `scalar` runs the
# golden tests forced to the scalar level (aarch64's compiler contracts float operations its own
# way). Exit 77 (skipped) without the cross compiler or qemu. ctest runs `build` once, then
# the two runs side by side.
set -eu
mode="$1"
source_dir="$2"
build_dir="$3"
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "skipped: no $tool (scripts/install-deps installs it)"; exit 77; }
done
tests="$build_dir/tests/engine_tests"
if [ "$mode" = build ]; then
  cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$source_dir/cmake/aarch64-linux-gnu.cmake" -DWOOLLY_ENGINE_ONLY=ON >/dev/null
  cmake --build "$build_dir" -j"$(nproc)" --target engine_tests
  # ELF e_machine (2 bytes at offset 18) is 183 for AArch64.
  [ "$(od -An -tu2 -j18 -N2 "$tests" | tr -d ' ')" = 183 ] || { echo "not an aarch64 binary: $tests"; exit 1; }
  exit 0
fi
[ -x "$tests" ] || { echo "no $tests: the build step failed"; exit 1; }
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
case "$mode" in
  neon)
    qemu-aarch64 "$tests" -tc="an unsupported forced level is refused" # the default level is neon
    WOOLLY_KERNELS=neon qemu-aarch64 "$tests" ;;
  scalar)
    WOOLLY_KERNELS=scalar qemu-aarch64 "$tests" -tc="*golden*,*llama.cpp*,*bundled*,*quantization*" ;;
  *) echo "usage: neon_under_qemu.sh build|neon|scalar SOURCE BUILD"; exit 2 ;;
esac
