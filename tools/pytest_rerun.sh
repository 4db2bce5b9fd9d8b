#!/usr/bin/env bash
# Runs pytest (python "$1", the rest its arguments) with skip reasons shown.
# When tests fail (pytest's exit status 1, not a crash, an interruption or a
# collection error), the failed ones run once more: a test that depends on
# timing may lose on a loaded 2-core machine.  Exit status: 0 passed, 10
# passed only when the failed tests ran again (said in the output), else
# pytest's own.
set -uo pipefail
py=$1
shift
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
"$py" -m pytest -q -rs --timeout=300 -o cache_dir="$cache" "$@"
rc=$?
if [ "$rc" -ne 1 ]; then
  exit "$rc"
fi
echo "== the failed tests once more (a test that depends on timing may lose on a loaded machine)"
"$py" -m pytest -q -rs --timeout=300 -o cache_dir="$cache" --lf "$@" || exit $?
echo "== passed only when the failed tests above ran again"
exit 10
