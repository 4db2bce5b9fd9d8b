# ox_profile: `make demo` and `make test` do all set-up on a fresh machine.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip --disable-pip-version-check -q
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SRCS    := $(wildcard engine/*.c engine/*.h) setup.py
PYDEPS  := pytest pytest-timeout Flask Flask-Login Django fastapi starlette uvicorn httpx jsonschema playwright gunicorn uwsgi build mypy ipython ipykernel nbclient nbformat
APTDEPS := chromium golang-go wrk

.PHONY: all venv build engine demo test test-fast test-versions test-asan valgrind lint sysdeps bench clean

all: build

# The package alone (what `make demo` needs), then the test toolchain on top.
$(VENV)/.stamp-base: pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install setuptools wheel
	OXP_WERROR=1 $(PIP) install --no-build-isolation -e .
	touch $@

# (Again when the Makefile changes: PYDEPS may have.)
$(VENV)/.stamp: $(VENV)/.stamp-base Makefile
	$(PIP) install $(PYDEPS)
	touch $@

venv: $(VENV)/.stamp

# The in-place build the editable install points at; -Werror as in CI.
build: $(VENV)/.stamp engine

engine: $(VENV)/.stamp-base
	OXP_WERROR=1 $(VPY) setup.py -q build_ext --inplace 2>&1 | grep -v -E '^(running|copying)' || true
	$(VPY) -c "import ox_profile._engine as e; print('engine built:', e.BUILD_INFO)"

# Debian tools the tests drive for real: Chromium (pages), Go (pprof), wrk
# (load); cppcheck for the C lint.  (uWSGI comes from PyPI: it builds from
# source with the C compiler.)
sysdeps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v cppcheck >/dev/null || missing="$$missing cppcheck"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# Only the package itself: no test toolchain.
demo: engine
	$(VPY) -m ox_profile run -o demo-profile.html examples/demo.py

# The CPython versions make test covers.  The main venv (PY) runs the whole
# suite; tools/test_versions.sh builds the engine for each other version it
# finds (pyenv, PATH), runs the version-sensitive suites there, runs the
# AddressSanitizer stress under every one, and says which it skipped.
PY_VERSIONS ?= 3.11 3.12 3.13

test: sysdeps build lint
	@test -d "$${OXP_SHARED:-../shared}" || echo "== ../shared (the project's shared material) not found: the seed-compatibility and speedscope-schema tests will be skipped (OXP_SHARED may point at it)"
	tools/pytest_rerun.sh $(VPY) tests || test $$? -eq 10
	MAIN_PY=$(VPY) tools/test_versions.sh $(PY_VERSIONS)

# The version-sensitive suites under the other versions only.
test-versions: build
	MAIN_PY=$(VPY) tools/test_versions.sh $(PY_VERSIONS)

test-fast: build
	$(VPY) -m pytest -q -x --timeout=300 tests

# cppcheck on the engine, once per layout family (the layout headers are
# only seen with their version's macros).
LAYOUT_LINT := py311.h:0x030B07F0 py312.h:0x030C01F0 py313.h:0x030D00F0
lint:
	@if command -v cppcheck >/dev/null; then \
	  for l in $(LAYOUT_LINT); do \
	    cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	      --inline-suppr --suppress=missingIncludeSystem --suppress=missingInclude --std=c11 -DOXP_HAVE_NOGIL=1 \
	      -DOXP_LAYOUT_HEADER="\"$${l%%:*}\"" -DPY_VERSION_HEX=$${l##*:} -Iengine/layout \
	      '-DPy_RETURN_NONE=return Py_NewRef(Py_None)' '-DPy_RETURN_TRUE=return Py_NewRef(Py_True)' engine || exit 1; \
	  done; \
	else echo "cppcheck not installed: skipping C lint (apt-get install cppcheck)"; fi

# AddressSanitizer + UBSan build of the engine, running the stress, engine and reader tests
# (the default guarded-copy reader included).
test-asan: $(VENV)/.stamp
	rm -rf build/asan && mkdir -p build/asan && cp -r src/ox_profile build/asan/
	OXP_ASAN=1 $(VPY) setup.py -q build_ext --build-lib build/asan/src --build-temp build/asan/tmp --force
	cp build/asan/src/ox_profile/_engine*.so build/asan/ox_profile/
	cd build/asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  PYTHONPATH=$$PWD OXP_EXPECT_ENGINE=$$PWD/ox_profile OXP_UNDER_ASAN=1 ../../$(VPY) -m pytest -q -p no:cacheprovider --timeout=600 \
	  -rs ../../tests/test_stress.py ../../tests/test_engine.py ../../tests/test_saferead.py ../../tests/test_share_format.py

valgrind: build
	OX_PROFILE_READER=vm $(VPY) tools/valgrind_check.py -- $(VPY) tests/stress_program.py --seconds 2 --interval 0.001
	$(VPY) tools/valgrind_check.py -- $(VPY) tests/stress_program.py --seconds 2 --interval 0.001 --backend gil

bench: build
	$(VPY) bench/run.py

clean:
	rm -rf build dist src/ox_profile/*.so src/*.egg-info .pytest_cache demo-profile.html .venv-3.*
