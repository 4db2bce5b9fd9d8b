"""A profile database filled to its memory cap, as a long-running server leaves it.

:func:`fill` records real captures (``Database.capture_now``, the GIL-holding
capture of every thread) of random call chains through ``functions`` generated
functions spread over modules and files, each chain 5 to 40 frames deep and
taken under one of ``labels`` labels, until the database overflows its cap.
The pages, JSON answers and downloads of the Flask blueprint are measured and
tested against such a database (``bench/flask_pages.py``,
``tests/test_flask_bounds.py``).

Run directly it fills a fresh 32 MiB database and prints one
``BENCH_RESULT {json}`` line with its size and how long filling took.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any, Callable, Dict, List

import ox_profile

FUNCTIONS_PER_MODULE = 50

_TEMPLATE = (
    "def {name}(path, pos, capture):\n"
    "    if pos + 1 < len(path):\n"
    "        return path[pos + 1](path, pos + 1, capture)\n"
    "    return capture()\n"
)


def make_functions(count: int = 5000) -> List[Callable[..., Any]]:
    """``count`` distinct functions, 50 per module (``app.mod_NNN`` in
    ``/srv/app/mod_NNN.py``), each calling the next one of its path."""
    functions: List[Callable[..., Any]] = []
    for start in range(0, count, FUNCTIONS_PER_MODULE):
        module = start // FUNCTIONS_PER_MODULE
        names = ["handle_%s_%05d" % (("request", "query", "render", "parse", "validate")[i % 5], i)
                 for i in range(start, min(count, start + FUNCTIONS_PER_MODULE))]
        source = "\n".join(_TEMPLATE.format(name=name) for name in names)
        namespace: Dict[str, Any] = {"__name__": "app.mod_%03d" % module}
        exec(compile(source, "/srv/app/mod_%03d.py" % module, "exec"), namespace)  # noqa: S102
        functions.extend(namespace[name] for name in names)
    return functions


def fill(database: Any, functions: List[Callable[..., Any]], labels: int = 300,
         min_depth: int = 5, max_depth: int = 40, seed: int = 1,
         max_captures: int = 10_000_000) -> Dict[str, Any]:
    """Capture random chains into ``database`` until it overflows its cap (or
    ``max_captures``); returns its ``info()`` and the number of captures."""
    rng = random.Random(seed)
    names = ["/api/v1/resource_%03d" % i for i in range(labels)]
    capture = database.capture_now
    done = 0
    while done < max_captures:
        for _ in range(200):
            path = [rng.choice(functions) for _ in range(rng.randint(min_depth, max_depth))]
            with ox_profile.label(names[rng.randrange(labels)]):
                path[0](path, 0, capture)
        done += 200
        if database.info()["overflow_samples"]:
            break
    info = dict(database.info())
    info["captures"] = done
    return info


def main(argv: List[str]) -> int:
    cap = int(argv[1]) if len(argv) > 1 else 32 << 20
    from ox_profile import _engine
    database = _engine.Database(cap)
    t0 = time.perf_counter()
    info = fill(database, make_functions())
    info["fill_seconds"] = round(time.perf_counter() - t0, 2)
    print("BENCH_RESULT " + json.dumps(info, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
