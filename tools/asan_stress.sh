#!/usr/bin/env bash
# The AddressSanitizer + UBSan stress of the engine for one interpreter:
# builds the engine with the sanitizers into build/asan-X.Y (apart from the
# in-place build) and runs tests/test_stress.py against it.
# Usage: tools/asan_stress.sh VENV_PYTHON [pytest files...]
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
files=("${@:-tests/test_stress.py}")
v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
dir=build/asan-$v
rm -rf "$dir" && mkdir -p "$dir" && cp -r src/ox_profile "$dir/"
rm -f "$dir"/ox_profile/_engine*.so
OXP_ASAN=1 "$py" setup.py -q build_ext --build-lib "$dir/lib" --build-temp "$dir/tmp" --force 2>&1 \
  | grep -v -E '^(running|copying)|Warning|warn\(|^\s*$|^!!|\*\*\*|SPDX|project.license|By 20..-|deprecated|See https' || true
cp "$dir"/lib/ox_profile/_engine*.so "$dir/ox_profile/"
root=$PWD
cd "$dir"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
  PYTHONPATH=$PWD OXP_EXPECT_ENGINE=$PWD/ox_profile OXP_UNDER_ASAN=1 \
  "$py" -m pytest -q -p no:cacheprovider --timeout=600 "${files[@]/#/$root/}"
