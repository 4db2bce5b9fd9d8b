/* Layout family: CPython 3.12.
 * Sources: Include/cpython/pystate.h (PyThreadState, _PyCFrame),
 * Include/internal/pycore_frame.h (_PyInterpreterFrame: f_code first,
 * f_funcobj, FRAME_OWNED_BY_CSTACK), Include/internal/pycore_interp.h,
 * Include/internal/pycore_ceval_state.h (the GIL moved into the interpreter:
 * gh-104210, PEP 684) and Include/internal/pycore_runtime.h of CPython 3.12.
 * Python/ceval.c (3.12) pushes an entry frame owned by FRAME_OWNED_BY_CSTACK
 * on the C stack at each _PyEval_EvalFrameDefault, running the interpreter
 * trampoline code object ("shim" frames). */
#ifndef OXP_LAYOUT_PY312_H
#define OXP_LAYOUT_PY312_H

#if PY_VERSION_HEX < 0x030C0000 || PY_VERSION_HEX >= 0x030D0000
#error "layout/py312.h is for CPython 3.12"
#endif

#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "objects_311_313.h"

#define OXP_LAYOUT_NAME "3.12"
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
    /* As in 3.11, through the innermost _PyCFrame (tstate->root_cframe
     * when no eval loop runs). */
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
    out->instr = (uintptr_t)f->prev_instr; /* as in 3.11 */
    out->func = (uintptr_t)f->f_funcobj;
    out->globals = (uintptr_t)f->f_globals;
    switch (f->owner) {
    case FRAME_OWNED_BY_THREAD:
        out->kind = OXP_FRAME_FUNCTION;
        break;
    case FRAME_OWNED_BY_GENERATOR:
        out->kind = OXP_FRAME_GENERATOR;
        break;
    case FRAME_OWNED_BY_CSTACK:
        out->kind = OXP_FRAME_SHIM;
        break;
    default:
        out->kind = OXP_FRAME_BAD;
        break;
    }
}

/* From 3.12 each interpreter points to its GIL (interp->ceval.gil, its own
 * or the main interpreter's); locked and last_holder as in 3.11
 * (Python/ceval_gil.c take_gil/drop_gil). */
static inline uintptr_t oxp_layout_gil_holder(uintptr_t interp)
{
    struct _gil_runtime_state *gil = ((PyInterpreterState *)interp)->ceval.gil;
    if (gil == NULL || !_Py_atomic_load_relaxed(&gil->locked)) {
        return 0;
    }
    return (uintptr_t)_Py_atomic_load_relaxed(&gil->last_holder);
}

static inline int oxp_layout_finalizing(void)
{
    return _Py_atomic_load_relaxed(&_PyRuntime._finalizing) != 0;
}

/* 3.12 publishes no layout description either (_Py_DebugOffsets is 3.13+). */
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
