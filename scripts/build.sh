#!/usr/bin/env bash
# Configures and builds one flavour of autoglm-deploy.
#   scripts/build.sh              Release build in build/ (binary: build/autoglm-deploy)
#   scripts/build.sh asan         AddressSanitizer + UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
# nvcc is often installed outside PATH; CUDA sources are compiled whenever it exists.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
case "$flavour" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  # nvcc does not build with the sanitizers; the CUDA sources are covered by the release build.
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTOGLM_SANITIZE=ON -DAUTOGLM_CUDA=OFF) ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja -DAUTOGLM_WERROR="${AUTOGLM_WERROR:-ON}" "${flags[@]}"
cmake --build "$dir" -j "$(nproc)"
