/* The neutral records the layout layer decodes CPython's structures into
 * (layout.h).  Plain C: code that walks stacks includes this, never a
 * CPython internal header. */
#ifndef OXP_LAYOUT_RECORDS_H
#define OXP_LAYOUT_RECORDS_H

#include <stddef.h>
#include <stdint.h>

/* A thread state. */
typedef struct {
    uintptr_t next;       /* the next thread state of the interpreter, or 0 */
    uintptr_t interp;     /* the interpreter it belongs to */
    uint64_t ident;       /* threading.get_ident(); 0 while the thread starts */
    uint64_t native_id;   /* kernel TID */
    /* Where its current frame is: the pointer at frame_at (a field of the
     * thread state) or, when frame_via >= 0, the pointer frame_via bytes
     * into what that field points to.  Follow it afresh at each sample
     * (oxp_saferead_chase): the thread changes it as it runs. */
    uintptr_t frame_at;
    intptr_t frame_via;
    uintptr_t context_at; /* address of its current contextvars Context pointer
                             (an asyncio task's while one of its steps runs) */
    uintptr_t chunk;      /* its current data-stack chunk, or 0 ... */
    uintptr_t chunk_top;  /* ... and the end of what is in use in it */
} oxp_pythread_t;

typedef enum {
    OXP_FRAME_FUNCTION = 0, /* a Python function's frame, on the data stack */
    OXP_FRAME_GENERATOR,    /* a generator's or coroutine's frame, inside that object */
    OXP_FRAME_SHIM,         /* an interpreter entry frame: no Python code, skipped */
    OXP_FRAME_BAD           /* no live chain holds such a frame: a torn read */
} oxp_frame_kind_t;

/* A frame (an interpreter frame, not a frame object). */
typedef struct {
    uintptr_t previous;   /* the calling frame, or 0 */
    uintptr_t code;       /* its code object (for a shim: whatever it holds) */
    uintptr_t instr;      /* the code unit that gives its current line */
    uintptr_t func;       /* its function object, or 0 */
    uintptr_t globals;    /* its globals dict, or 0 */
    oxp_frame_kind_t kind;
} oxp_pyframe_t;

/* The fixed part of a code object. */
typedef struct {
    uintptr_t name, qualname, filename; /* str objects */
    uintptr_t linetable;                /* a bytes object */
    int64_t units;                      /* length of its bytecode, in code units */
    int32_t firstlineno;
    int32_t firsttraceable;             /* first code unit a frame is visible from */
    uintptr_t first_unit;               /* address of its first code unit */
} oxp_pycode_t;

/* A data-stack chunk's header. */
typedef struct {
    uintptr_t previous; /* the older chunk, or 0 */
    size_t size;        /* bytes allocated for the chunk */
    size_t used;        /* bytes in use, header included */
} oxp_pychunk_t;

/* The header of a str object. */
typedef struct {
    int64_t length; /* in code points */
    unsigned kind;  /* bytes per code point: 1, 2 or 4 */
    int ascii;      /* all code points < 128 */
    size_t data;    /* where the code points start, from the object's address */
} oxp_pystr_t;

/* Where a dict's key/value entries are. */
typedef struct {
    uintptr_t entries; /* address of the first entry */
    int64_t n;         /* entries in use (deleted ones included) */
    size_t entry_size; /* bytes per entry */
    size_t key, value; /* offsets of the key and value pointers in an entry */
} oxp_pydictkeys_t;

#endif
