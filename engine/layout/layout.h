/* The layout layer: the one place that knows CPython's internal structures.
 *
 * The GIL-free capture copies raw bytes out of the interpreter (thread
 * states, frames, code objects, strings) and hands them to the decoders
 * declared here, which turn them into the neutral records below.  Nothing
 * outside engine/layout/ names a CPython internal type or field.
 *
 * One header per layout family implements the decoders, with the family's
 * own types from CPython's internal headers; setup.py picks it for the
 * interpreter being built for (its LAYOUTS table) and passes its name as
 * OXP_LAYOUT_HEADER.  docs/layouts.md says how to add a family.
 *
 * Include this header first in a C file (it defines Py_BUILD_CORE, which
 * the internal headers need, before Python.h). */
#ifndef OXP_LAYOUT_H
#define OXP_LAYOUT_H

#ifdef Py_PYTHON_H
#error "include layout/layout.h before Python.h: the internal headers need Py_BUILD_CORE"
#endif
#ifndef OXP_LAYOUT_HEADER
#error "OXP_LAYOUT_HEADER names the layout family header (setup.py sets it)"
#endif

#define Py_BUILD_CORE 1
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "records.h"

/* -- what each family header provides ------------------------------------ *
 *
 * Sizes of the raw copies the decoders read:
 *   OXP_LAYOUT_NAME          "3.11", ...
 *   OXP_TSTATE_SIZE          a thread state
 *   OXP_FRAME_SIZE           a frame
 *   OXP_CODE_HEADER_SIZE     a code object up to its bytecode
 *   OXP_CODE_UNIT_SIZE       one code unit
 *   OXP_CHUNK_HEADER_SIZE    a data-stack chunk up to its data
 *   OXP_STR_HEADER_SIZE      the part of a str that says where its data is
 *   OXP_BYTES_HEADER_SIZE    a bytes object up to its data
 *   OXP_DICT_SIZE, OXP_DICTKEYS_HEADER_SIZE, OXP_FUNCTION_SIZE
 *
 * Decoders (static inline; raw points at a copy of at least the size above;
 * the int ones return 0, or -1 when the bytes cannot be what was asked for):
 *   uintptr_t oxp_layout_threads_head(uintptr_t interp)
 *        address of the word holding the interpreter's first thread state
 *   void oxp_layout_thread(const void *raw, uintptr_t addr, oxp_pythread_t *out)
 *   void oxp_layout_frame(const void *raw, oxp_pyframe_t *out)
 *   int  oxp_layout_code(const void *raw, uintptr_t addr, oxp_pycode_t *out)
 *   int  oxp_layout_chunk(const void *raw, oxp_pychunk_t *out)
 *   int  oxp_layout_str(const void *raw, oxp_pystr_t *out)
 *   int  oxp_layout_bytes(const void *raw, size_t *len, size_t *data)
 *   int  oxp_layout_dict(const void *raw, uintptr_t *keys)     (a non-split dict)
 *   int  oxp_layout_dict_keys(const void *raw, uintptr_t keys, oxp_pydictkeys_t *out)
 *   int  oxp_layout_function(const void *raw, uintptr_t *code, uintptr_t *module)
 * Live state, read in place (atomically where CPython writes it so):
 *   uintptr_t oxp_layout_gil_holder(uintptr_t interp)   thread state holding the GIL, or 0
 *   int oxp_layout_finalizing(void)                     the runtime is shutting down
 * Once, with the GIL held, before any capture:
 *   int oxp_layout_check(char *why, size_t n)
 *        0 if the running interpreter matches the layout compiled in; else -1
 *        and why (3.13+: checked against _Py_DebugOffsets).
 * Families whose interpreters publish _Py_DebugOffsets (3.13+) also define
 * OXP_LAYOUT_HAS_DEBUG_OFFSETS, oxp_offset_row_t, OXP_NOFFSETS and
 *   const void *oxp_layout_running_offsets(size_t *len)
 *   void oxp_layout_offset_rows(const void *raw, oxp_offset_row_t *rows)
 *   int oxp_layout_check_offsets(const void *raw, size_t len, char *why, size_t n)
 * for the check and its tests. */

#include OXP_LAYOUT_HEADER

/* -- version-free arithmetic on the records ------------------------------- */

/* The index of the code unit a frame is at, from its instruction pointer
 * (oxp_pyframe_t.instr): -1 for a frame that has not started, INT64_MIN
 * when the pointer cannot belong to the code object. */
static inline int64_t oxp_frame_lasti(uintptr_t instr, const oxp_pycode_t *c)
{
    intptr_t delta = (intptr_t)(instr - c->first_unit);
    if (delta % (intptr_t)OXP_CODE_UNIT_SIZE != 0) {
        return INT64_MIN;
    }
    int64_t lasti = (int64_t)(delta / (intptr_t)OXP_CODE_UNIT_SIZE);
    return lasti < -1 || lasti >= c->units ? INT64_MIN : lasti;
}

/* Whether CPython's own tools would hide the frame: one that has not reached
 * its first traceable instruction (still copying arguments into cells, say).
 * Generator frames are always visible. */
static inline int oxp_frame_incomplete(oxp_frame_kind_t kind, const oxp_pycode_t *c, int64_t lasti)
{
    return kind != OXP_FRAME_GENERATOR && lasti < c->firsttraceable;
}

#endif
