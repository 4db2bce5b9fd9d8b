"""Builds the C engine, ox_profile._engine.

The GIL-free capture reads CPython's internal frame structures, so it is
compiled only where it was written for: CPython 3.11 on Linux with the
internal headers installed.  Elsewhere the portable, GIL-holding capture is
the only backend.  Environment switches:

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
]


def nogil_supported():
    if os.environ.get("OXP_NO_NOGIL"):
        return False
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return False
    if sys.version_info[:2] != (3, 11):
        return False
    include = sysconfig.get_paths()["include"]
    return os.path.exists(os.path.join(include, "internal", "pycore_frame.h"))


macros = []
if nogil_supported():
    macros.append(("OXP_HAVE_NOGIL", "1"))

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
            sources=[os.path.join(ENGINE, s) for s in SOURCES],
            depends=[os.path.join(ENGINE, h) for h in os.listdir(ENGINE) if h.endswith(".h")],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    ]
)
