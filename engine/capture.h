/* Capture backends: each captures every thread's Python stack and records it
 * in a database.  The GIL-holding backend uses the public C API and works on
 * every CPython; the GIL-free one reads CPython's internal structures through
 * the layout layer (layout/), for the versions setup.py has a layout for. */
#ifndef OXP_CAPTURE_H
#define OXP_CAPTURE_H

#include "sampler.h"

/* -- GIL-holding (capture_gil.c) ---------------------------------------- */

/* With the GIL held: records the stacks of every thread of the current
 * interpreter except `skip` into db.  `s` (optional) supplies the cache,
 * scratch, mode and statistics; without it a temporary cache is used.
 * 0 / -1 with a Python exception. */
int oxp_capture_gil_now(oxp_sampler_t *s, oxp_db_t *db, oxp_codecache_t *cache, oxp_scratch_t *scratch,
                        PyThreadState *skip, uint64_t tick);
/* From the sampler thread: takes the GIL (through its own thread state),
 * captures, releases.  Never raises: failures are counted.  Returns the
 * nanoseconds spent waiting for the GIL. */
int64_t oxp_capture_gil_tick_from_thread(oxp_sampler_t *s, uint64_t tick);
/* From the sampler thread as it ends: deletes its thread state. */
void oxp_capture_gil_thread_exit(oxp_sampler_t *s);

/* -- GIL-free (capture_nogil.c) ----------------------------------------- */

/* 1 if this build and process can capture without the GIL; else 0 and *why
 * (GIL held: the first call checks the running interpreter's layout). */
int oxp_capture_nogil_available(const char **why);
/* The layout family compiled in ("3.11", ...), or NULL without one. */
const char *oxp_capture_nogil_layout(void);
/* Test hook, 3.13+: with None, [(field, value in this build)] for every
 * field of _Py_DebugOffsets; with a bytes copy of one, None if it matches
 * this build, else why not.  NotImplementedError before 3.13. */
PyObject *oxp_capture_nogil_debug_offsets(PyObject *raw);
/* From the sampler thread, without the GIL.  Never raises, never blocks on
 * the GIL, allocates no Python object: failures are counted in s->stats. */
void oxp_capture_nogil_tick(oxp_sampler_t *s, uint64_t tick);
void oxp_capture_nogil_free(oxp_sampler_t *s);

#endif
