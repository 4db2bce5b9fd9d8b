/* Layout family: CPython 3.11.
 * Sources: Include/cpython/pystate.h (PyThreadState, _PyCFrame),
 * Include/internal/pycore_frame.h (_PyInterpreterFrame, its owners),
 * Include/internal/pycore_interp.h (PyInterpreterState.threads),
 * Include/internal/pycore_runtime.h (_PyRuntimeState: _finalizing, gilstate)
 * and Include/internal/pycore_gil.h (_gil_runtime_state) of CPython 3.11. */
#ifndef OXP_LAYOUT_PY311_H
#define OXP_LAYOUT_PY311_H

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "layout/py311.h is for CPython 3.11"
#endif

#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "objects_311_313.h"

#define OXP_LAYOUT_NAME "3.11"
#define OXP_TSTATE_SIZE sizeof(PyThreadState)
#define OXP_FRAME_SIZE sizeof(_PyInterpreterFrame)

static inline uintptr_t oxp_layout_threads_head(uintptr_t interp)
{
    return interp + offsetof(PyInterpreterState, threads.head);
}

static inline void oxp_layout_thread(const void *raw, uintptr_t addr, oxp_pythread_t *out)
{
    const PyThreadState *ts = (const PyThreadState *)raw;
    out->next = (uintptr_t)ts->next;
    out->interp = (uintptr_t)ts->interp;
    out->ident = (uint64_t)ts->thread_id;
    out->native_id = (uint64_t)ts->native_thread_id;
    /* The current frame hangs off the _PyCFrame of the innermost running
     * _PyEval_EvalFrameDefault, which lives on the thread's C stack and
     * changes as the thread enters and leaves evaluation loops (each
     * generator step runs in one of its own). */
    out->frame_at = addr + offsetof(PyThreadState, cframe);
    out->frame_via = (intptr_t)offsetof(_PyCFrame, current_frame);
    out->context_at = addr + offsetof(PyThreadState, context);
    out->chunk = (uintptr_t)ts->datastack_chunk;
    out->chunk_top = (uintptr_t)ts->datastack_top;
}

static inline void oxp_layout_frame(const void *raw, oxp_pyframe_t *out)
{
    const _PyInterpreterFrame *f = (const _PyInterpreterFrame *)raw;
    out->previous = (uintptr_t)f->previous;
    out->code = (uintptr_t)f->f_code;
    /* prev_instr: the code unit before the next one (_PyInterpreterFrame_LASTI). */
    out->instr = (uintptr_t)f->prev_instr;
    out->func = (uintptr_t)f->f_func;
    out->globals = (uintptr_t)f->f_globals;
    switch (f->owner) {
    case FRAME_OWNED_BY_THREAD:
        out->kind = OXP_FRAME_FUNCTION;
        break;
    case FRAME_OWNED_BY_GENERATOR:
        out->kind = OXP_FRAME_GENERATOR;
        break;
    default: /* FRAME_OWNED_BY_FRAME_OBJECT: a frame that has returned */
        out->kind = OXP_FRAME_BAD;
        break;
    }
}

/* 3.11 has one GIL for the runtime; the thread state holding it is
 * gilstate.tstate_current (Python/ceval_gil.h take_gil/drop_gil). */
static inline uintptr_t oxp_layout_gil_holder(uintptr_t interp)
{
    (void)interp;
    if (!_Py_atomic_load_relaxed(&_PyRuntime.ceval.gil.locked)) {
        return 0;
    }
    return (uintptr_t)_Py_atomic_load_relaxed(&_PyRuntime.gilstate.tstate_current);
}

static inline int oxp_layout_finalizing(void)
{
    return _Py_atomic_load_relaxed(&_PyRuntime._finalizing) != 0;
}

/* 3.11 publishes no layout description: the extension's ABI tag already
 * ties it to 3.11; check the running version all the same. */
static inline int oxp_layout_check(char *why, size_t n)
{
    if ((Py_Version >> 16) != (PY_VERSION_HEX >> 16)) {
        snprintf(why, n, "built for CPython %d.%d but running %lu.%lu", PY_MAJOR_VERSION, PY_MINOR_VERSION,
                 Py_Version >> 24, (Py_Version >> 16) & 0xff);
        return -1;
    }
    return 0;
}

#endif
