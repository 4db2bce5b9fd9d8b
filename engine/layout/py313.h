/* Layout family: CPython 3.13 (the default build; free-threaded builds are
 * another layout and are not supported).
 * Sources: Include/cpython/pystate.h (PyThreadState: current_frame replaced
 * the _PyCFrame chain, gh-106008), Include/internal/pycore_frame.h
 * (_PyInterpreterFrame: f_executable, a code object or None, gh-100987;
 * instr_ptr, the instruction being executed, gh-106879; FRAME_OWNED_BY_CSTACK
 * entry frames with f_executable None), Include/internal/pycore_gil.h,
 * Include/internal/pycore_runtime.h (_Py_DebugOffsets, the first member of
 * _PyRuntimeState, gh-107944) and Include/internal/pycore_runtime_init.h
 * (how CPython fills it) of CPython 3.13. */
#ifndef OXP_LAYOUT_PY313_H
#define OXP_LAYOUT_PY313_H

#if PY_VERSION_HEX < 0x030D0000 || PY_VERSION_HEX >= 0x030E0000
#error "layout/py313.h is for CPython 3.13"
#endif
#ifdef Py_GIL_DISABLED
#error "layout/py313.h is for the default (GIL) build of CPython 3.13"
#endif

#include <string.h>

/* 3.13's internal headers are not -Wextra clean (an unused parameter in
 * pycore_object.h): not ours to fix. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "internal/pycore_dict.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#pragma GCC diagnostic pop

#include "objects_311_313.h"

#define OXP_LAYOUT_NAME "3.13"
#define OXP_TSTATE_SIZE sizeof(PyThreadState)
#define OXP_FRAME_SIZE sizeof(_PyInterpreterFrame)
#define OXP_LAYOUT_HAS_DEBUG_OFFSETS 1

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
    /* The thread state itself points to the current frame. */
    out->frame_at = addr + offsetof(PyThreadState, current_frame);
    out->frame_via = -1;
    out->context_at = addr + offsetof(PyThreadState, context);
    out->chunk = (uintptr_t)ts->datastack_chunk;
    out->chunk_top = (uintptr_t)ts->datastack_top;
}

static inline void oxp_layout_frame(const void *raw, oxp_pyframe_t *out)
{
    const _PyInterpreterFrame *f = (const _PyInterpreterFrame *)raw;
    out->previous = (uintptr_t)f->previous;
    out->code = (uintptr_t)f->f_executable;
    /* instr_ptr: the instruction being executed (_PyInterpreterFrame_LASTI). */
    out->instr = (uintptr_t)f->instr_ptr;
    out->func = (uintptr_t)f->f_funcobj;
    out->globals = (uintptr_t)f->f_globals;
    if (f->owner == FRAME_OWNED_BY_CSTACK || f->f_executable == Py_None) {
        out->kind = OXP_FRAME_SHIM;
    } else if (f->owner == FRAME_OWNED_BY_THREAD) {
        out->kind = OXP_FRAME_FUNCTION;
    } else if (f->owner == FRAME_OWNED_BY_GENERATOR) {
        out->kind = OXP_FRAME_GENERATOR;
    } else {
        out->kind = OXP_FRAME_BAD;
    }
}

/* As in 3.12, each interpreter points to its GIL; 3.13 reads its fields
 * with the _Py_atomic_*_relaxed functions (Python/ceval_gil.c). */
static inline uintptr_t oxp_layout_gil_holder(uintptr_t interp)
{
    struct _gil_runtime_state *gil = ((PyInterpreterState *)interp)->ceval.gil;
    if (gil == NULL || !_Py_atomic_load_int_relaxed(&gil->locked)) {
        return 0;
    }
    return (uintptr_t)_Py_atomic_load_ptr_relaxed(&gil->last_holder);
}

static inline int oxp_layout_finalizing(void)
{
    return _Py_atomic_load_ptr_relaxed(&_PyRuntime._finalizing) != NULL;
}

/* Every field of 3.13's _Py_DebugOffsets, with the value this build was
 * compiled with: X(section, field, value).  The same expressions as
 * _Py_DebugOffsets_INIT in Include/internal/pycore_runtime_init.h. */
#define OXP_DEBUG_OFFSETS(X)                                                                      \
    X(runtime_state, size, sizeof(_PyRuntimeState))                                               \
    X(runtime_state, finalizing, offsetof(_PyRuntimeState, _finalizing))                          \
    X(runtime_state, interpreters_head, offsetof(_PyRuntimeState, interpreters.head))             \
    X(interpreter_state, size, sizeof(PyInterpreterState))                                        \
    X(interpreter_state, id, offsetof(PyInterpreterState, id))                                    \
    X(interpreter_state, next, offsetof(PyInterpreterState, next))                                \
    X(interpreter_state, threads_head, offsetof(PyInterpreterState, threads.head))                \
    X(interpreter_state, gc, offsetof(PyInterpreterState, gc))                                    \
    X(interpreter_state, imports_modules, offsetof(PyInterpreterState, imports.modules))          \
    X(interpreter_state, sysdict, offsetof(PyInterpreterState, sysdict))                          \
    X(interpreter_state, builtins, offsetof(PyInterpreterState, builtins))                        \
    X(interpreter_state, ceval_gil, offsetof(PyInterpreterState, ceval.gil))                      \
    X(interpreter_state, gil_runtime_state, offsetof(PyInterpreterState, _gil))                   \
    X(interpreter_state, gil_runtime_state_enabled, _Py_Debug_gilruntimestate_enabled)            \
    X(interpreter_state, gil_runtime_state_locked, offsetof(PyInterpreterState, _gil.locked))     \
    X(interpreter_state, gil_runtime_state_holder, offsetof(PyInterpreterState, _gil.last_holder)) \
    X(thread_state, size, sizeof(PyThreadState))                                                  \
    X(thread_state, prev, offsetof(PyThreadState, prev))                                          \
    X(thread_state, next, offsetof(PyThreadState, next))                                          \
    X(thread_state, interp, offsetof(PyThreadState, interp))                                      \
    X(thread_state, current_frame, offsetof(PyThreadState, current_frame))                        \
    X(thread_state, thread_id, offsetof(PyThreadState, thread_id))                                \
    X(thread_state, native_thread_id, offsetof(PyThreadState, native_thread_id))                  \
    X(thread_state, datastack_chunk, offsetof(PyThreadState, datastack_chunk))                    \
    X(thread_state, status, offsetof(PyThreadState, _status))                                     \
    X(interpreter_frame, size, sizeof(_PyInterpreterFrame))                                       \
    X(interpreter_frame, previous, offsetof(_PyInterpreterFrame, previous))                       \
    X(interpreter_frame, executable, offsetof(_PyInterpreterFrame, f_executable))                 \
    X(interpreter_frame, instr_ptr, offsetof(_PyInterpreterFrame, instr_ptr))                     \
    X(interpreter_frame, localsplus, offsetof(_PyInterpreterFrame, localsplus))                   \
    X(interpreter_frame, owner, offsetof(_PyInterpreterFrame, owner))                             \
    X(code_object, size, sizeof(PyCodeObject))                                                    \
    X(code_object, filename, offsetof(PyCodeObject, co_filename))                                 \
    X(code_object, name, offsetof(PyCodeObject, co_name))                                         \
    X(code_object, qualname, offsetof(PyCodeObject, co_qualname))                                 \
    X(code_object, linetable, offsetof(PyCodeObject, co_linetable))                               \
    X(code_object, firstlineno, offsetof(PyCodeObject, co_firstlineno))                           \
    X(code_object, argcount, offsetof(PyCodeObject, co_argcount))                                 \
    X(code_object, localsplusnames, offsetof(PyCodeObject, co_localsplusnames))                   \
    X(code_object, localspluskinds, offsetof(PyCodeObject, co_localspluskinds))                   \
    X(code_object, co_code_adaptive, offsetof(PyCodeObject, co_code_adaptive))                    \
    X(pyobject, size, sizeof(PyObject))                                                           \
    X(pyobject, ob_type, offsetof(PyObject, ob_type))                                             \
    X(type_object, size, sizeof(PyTypeObject))                                                    \
    X(type_object, tp_name, offsetof(PyTypeObject, tp_name))                                      \
    X(type_object, tp_repr, offsetof(PyTypeObject, tp_repr))                                      \
    X(type_object, tp_flags, offsetof(PyTypeObject, tp_flags))                                    \
    X(tuple_object, size, sizeof(PyTupleObject))                                                  \
    X(tuple_object, ob_item, offsetof(PyTupleObject, ob_item))                                    \
    X(tuple_object, ob_size, offsetof(PyTupleObject, ob_base.ob_size))                            \
    X(list_object, size, sizeof(PyListObject))                                                    \
    X(list_object, ob_item, offsetof(PyListObject, ob_item))                                      \
    X(list_object, ob_size, offsetof(PyListObject, ob_base.ob_size))                              \
    X(dict_object, size, sizeof(PyDictObject))                                                    \
    X(dict_object, ma_keys, offsetof(PyDictObject, ma_keys))                                      \
    X(dict_object, ma_values, offsetof(PyDictObject, ma_values))                                  \
    X(float_object, size, sizeof(PyFloatObject))                                                  \
    X(float_object, ob_fval, offsetof(PyFloatObject, ob_fval))                                    \
    X(long_object, size, sizeof(PyLongObject))                                                    \
    X(long_object, lv_tag, offsetof(PyLongObject, long_value.lv_tag))                             \
    X(long_object, ob_digit, offsetof(PyLongObject, long_value.ob_digit))                         \
    X(bytes_object, size, sizeof(PyBytesObject))                                                  \
    X(bytes_object, ob_size, offsetof(PyBytesObject, ob_base.ob_size))                            \
    X(bytes_object, ob_sval, offsetof(PyBytesObject, ob_sval))                                    \
    X(unicode_object, size, sizeof(PyUnicodeObject))                                              \
    X(unicode_object, state, offsetof(PyUnicodeObject, _base._base.state))                        \
    X(unicode_object, length, offsetof(PyUnicodeObject, _base._base.length))                      \
    X(unicode_object, asciiobject_size, sizeof(PyASCIIObject))                                    \
    X(gc, size, sizeof(struct _gc_runtime_state))                                                 \
    X(gc, collecting, offsetof(struct _gc_runtime_state, collecting))

/* One field of _Py_DebugOffsets: its value in an interpreter, and in this build. */
typedef struct {
    const char *name; /* "section.field" */
    uint64_t running;
    uint64_t built;
} oxp_offset_row_t;

#define OXP_OFFSET_ROW(section, field, value) {#section "." #field, d->section.field, (uint64_t)(value)},
#define OXP_COUNT_ROW(section, field, value) +1
enum { OXP_NOFFSETS = 0 OXP_DEBUG_OFFSETS(OXP_COUNT_ROW) };

/* The rows of a copy of an interpreter's _Py_DebugOffsets (raw, at least
 * sizeof(_Py_DebugOffsets) bytes) into out (OXP_NOFFSETS of them). */
static inline void oxp_layout_offset_rows(const void *raw, oxp_offset_row_t *out)
{
    _Py_DebugOffsets copy;
    memcpy(&copy, raw, sizeof(copy));
    const _Py_DebugOffsets *d = &copy;
    const oxp_offset_row_t rows[] = {OXP_DEBUG_OFFSETS(OXP_OFFSET_ROW)};
    memcpy(out, rows, sizeof(rows));
}

/* Checks a copy of an interpreter's _Py_DebugOffsets against this build, as
 * CPython's own Modules/_remote_debugging checks a target: the cookie, the
 * same major.minor version (the same version exactly for a pre-release),
 * the same free-threaded flag, then every offset.  0, or -1 and why. */
static inline int oxp_layout_check_offsets(const void *raw, size_t len, char *why, size_t n)
{
    _Py_DebugOffsets d;
    if (len < sizeof(d)) {
        snprintf(why, n, "_Py_DebugOffsets is %zu bytes, expected %zu", len, sizeof(d));
        return -1;
    }
    memcpy(&d, raw, sizeof(d));
    if (memcmp(d.cookie, _Py_Debug_Cookie, sizeof(d.cookie)) != 0) {
        snprintf(why, n, "_PyRuntime does not start with the _Py_DebugOffsets cookie");
        return -1;
    }
    uint64_t built = PY_VERSION_HEX;
    int prerelease = (built & 0xf0) != 0xf0;
    if ((d.version >> 16) != (built >> 16) || (prerelease && d.version != built)) {
        snprintf(why, n, "built for CPython version 0x%08llx, running 0x%08llx", (unsigned long long)built,
                 (unsigned long long)d.version);
        return -1;
    }
    if (d.free_threaded != _Py_Debug_Free_Threaded) {
        snprintf(why, n, "the running interpreter is %sa free-threaded build, this build is %s",
                 d.free_threaded ? "" : "not ", _Py_Debug_Free_Threaded ? "free-threaded" : "not");
        return -1;
    }
    oxp_offset_row_t rows[OXP_NOFFSETS];
    oxp_layout_offset_rows(raw, rows);
    for (size_t i = 0; i < OXP_NOFFSETS; i++) {
        if (rows[i].running != rows[i].built) {
            snprintf(why, n, "_Py_DebugOffsets.%s is %llu in the running interpreter, %llu in this build",
                     rows[i].name, (unsigned long long)rows[i].running, (unsigned long long)rows[i].built);
            return -1;
        }
    }
    return 0;
}

/* The running interpreter's _Py_DebugOffsets, and its size. */
static inline const void *oxp_layout_running_offsets(size_t *len)
{
    *len = sizeof(_Py_DebugOffsets);
    return &_PyRuntime.debug_offsets;
}

static inline int oxp_layout_check(char *why, size_t n)
{
    size_t len;
    const void *running = oxp_layout_running_offsets(&len);
    return oxp_layout_check_offsets(running, len, why, n);
}

#endif
