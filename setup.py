"""Builds the C engine, ox_profile._engine.

The GIL-free capture reads CPython's internal structures through one layout
header per CPython layout family (engine/layout/, the LAYOUTS table below),
so it is compiled only for the versions listed there, on Linux, for the
default (GIL) build, with the internal headers installed.  Elsewhere the
portable, GIL-holding capture is the only backend, and the engine says why
(ox_profile._engine.BUILD_INFO["nogil_note"]).  Environment switches:

  OXP_WERROR=1   add -Werror (the test build)
  OXP_ASAN=1     build with AddressSanitizer and UndefinedBehaviorSanitizer
  OXP_NO_NOGIL=1 leave the GIL-free capture out
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup

ENGINE = "engine"
SOURCES = [
    "module.c",
    "db.c",
    "index.c",
    "sampler.c",
    "capture_gil.c",
    "capture_nogil.c",
    "saferead.c",
    "linetable.c",
    "codecache.c",
    "labels.c",
    "snapshot.c",
    "pprof.c",
    "share.c",
    "sharemod.c",
]
# The rest of the GIL-free capture, built only with a layout.
NOGIL_SOURCES = ["stackwalk.c", "memo.c", "pyread.c"]

# One entry per CPython layout family the GIL-free capture knows: the
# version and its header in engine/layout/ (docs/layouts.md: adding one).
LAYOUTS = {
    (3, 11): "py311.h",
    (3, 12): "py312.h",
    (3, 13): "py313.h",
}


def nogil_layout():
    """The layout header for this interpreter, or None and why not."""
    version = "%d.%d" % sys.version_info[:2]
    if os.environ.get("OXP_NO_NOGIL"):
        return None, "built with OXP_NO_NOGIL=1"
    if sys.implementation.name != "cpython":
        return None, "%s is not CPython" % sys.implementation.name
    if not sys.platform.startswith("linux"):
        return None, "it is built for Linux only, not %s" % sys.platform
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None, "free-threaded CPython builds are not supported"
    header = LAYOUTS.get(sys.version_info[:2])
    if header is None:
        known = ", ".join("%d.%d" % v for v in sorted(LAYOUTS))
        return None, "CPython %s has no layout in this build (it knows %s)" % (version, known)
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "internal", "pycore_frame.h")):
        return None, ("the internal headers of CPython %s were not installed when it was built "
                      "(they come with a CPython built from source, pyenv, or the python%s-dev package)"
                      % (version, version))
    return header, None


macros = []
sources = list(SOURCES)
layout, why_not = nogil_layout()
if layout:
    macros += [("OXP_HAVE_NOGIL", "1"), ("OXP_LAYOUT_HEADER", '"%s"' % layout)]
    sources += NOGIL_SOURCES
else:
    macros.append(("OXP_NOGIL_UNAVAILABLE", '"no GIL-free capture: %s"' % why_not))

cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-O2", "-g"]
ldflags = []
if os.environ.get("OXP_WERROR"):
    cflags.append("-Werror")
if os.environ.get("OXP_ASAN"):
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1"]
    ldflags += ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "ox_profile._engine",
            sources=[os.path.join(ENGINE, s) for s in sources],
            depends=[os.path.join(ENGINE, d, h) for d in ("", "layout")
                     for h in os.listdir(os.path.join(ENGINE, d)) if h.endswith(".h")],
            include_dirs=[os.path.join(ENGINE, "layout")],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    ]
)
