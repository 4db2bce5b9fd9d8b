#!/usr/bin/env bash
# Runs the version-sensitive suites (engine, seed compatibility, stress, line
# table, generators, layout, readers, CLI) under every CPython version named
# on the command line that this machine has, each with its own venv and
# engine build, plus the AddressSanitizer stress per version.  The main venv
# (.venv) has already run the whole suite; its version gets only the
# AddressSanitizer stress here.  Says which versions it skipped, and why.
# Usage: tools/test_versions.sh 3.11 3.12 3.13
set -uo pipefail
cd "$(dirname "$0")/.."
MAIN_PY=${MAIN_PY:-.venv/bin/python}
PIP_FLAGS="--disable-pip-version-check -q"
SUITES=(tests/test_engine.py tests/test_seed_compat.py tests/test_stress.py tests/test_linetable.py
        tests/test_generators.py tests/test_layout.py tests/test_saferead.py tests/test_caveats.py
        tests/test_idle.py tests/test_task_labels.py tests/test_cli.py tests/test_share_format.py
        tests/test_shared.py tests/test_cli_subprocesses.py tests/test_flask.py tests/test_flask_servers.py
        tests/test_flame_nogil.py tests/test_unencodable.py tests/test_hardening.py tests/test_cli_endings.py)
main=$("$MAIN_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
status=0
summary=()

backend_of() {
  "$1" -c 'import ox_profile._engine as e; i = e.BUILD_INFO
print("GIL-free capture, layout %s" % i["layout"] if i["nogil_available"] else "GIL-holding capture only (%s)" % i["nogil_note"])'
}

for v in "$@"; do
  if [ "$v" = "$main" ]; then
    py=$MAIN_PY
    label="CPython $v (main venv, whole suite above)"
  else
    found=$(python3 tools/find_python.py "$v") || {
      echo "== CPython $v: not found on this machine: SKIPPED"
      summary+=("CPython $v: SKIPPED (no python$v found: pyenv, PATH, /usr/bin)")
      continue
    }
    venv=.venv-$v
    echo "== CPython $v: $found -> $venv"
    if ! { { test -x "$venv/bin/python" || "$found" -m venv "$venv"; } &&
           "$venv/bin/python" -m pip $PIP_FLAGS install setuptools wheel pytest pytest-timeout flask flask-login gunicorn &&
           OXP_WERROR=1 "$venv/bin/python" -m pip $PIP_FLAGS install --no-build-isolation -e . &&
           OXP_WERROR=1 "$venv/bin/python" setup.py -q build_ext --inplace >/dev/null 2>&1; }; then
      echo "== CPython $v: set-up or build FAILED"
      summary+=("CPython $v: FAILED to build")
      status=1
      continue
    fi
    py=$venv/bin/python
    label="CPython $v"
    echo "== CPython $v: $(backend_of "$py")"
    tools/pytest_rerun.sh "$py" "${SUITES[@]}"
    rc=$?
    if [ "$rc" -eq 10 ]; then
      label="CPython $v (some tests passed only when run again: see above)"
    elif [ "$rc" -ne 0 ]; then
      summary+=("CPython $v: suites FAILED")
      status=1
      continue
    fi
  fi
  echo "== CPython $v: AddressSanitizer stress"
  if ! tools/asan_stress.sh "$py" tests/test_stress.py tests/test_share_format.py; then
    summary+=("$label: AddressSanitizer stress FAILED")
    status=1
    continue
  fi
  summary+=("$label: passed, $(backend_of "$py"); AddressSanitizer stress passed")
done

echo
echo "== Versions tested:"
printf '   %s\n' "${summary[@]}"
exit $status
