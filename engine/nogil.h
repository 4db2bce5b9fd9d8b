/* Private to the GIL-free capture (capture_nogil.c, stackwalk.c, memo.c,
 * pyread.c): its per-sampler scratch and the per-thread walk state.  Version
 * free: CPython's structures reach it only as the layout layer's neutral
 * records (layout/records.h).  Everything here belongs to one sampler and is
 * touched only by its thread, except where a comment names db->lock. */
#ifndef OXP_NOGIL_H
#define OXP_NOGIL_H

#include <sys/uio.h>

#include "layout/records.h"
#include "sampler.h"

#define OXP_NOGIL_MAX_THREADS 1024 /* thread states copied per tick */
#define OXP_NOGIL_MAX_WALK 4096    /* frames followed per thread */
#define OXP_NOGIL_MAX_CHUNKS 16    /* data-stack chunks copied per thread */
#define OXP_NOGIL_MAX_CHUNK_BYTES ((size_t)1 << 20)
#define OXP_NOGIL_MAX_STR_CHARS 1024
#define OXP_NOGIL_MAX_LINETABLE ((size_t)1 << 16)
/* Walks of one thread per tick: a walk that meets a frame that changed
 * under it is done again from a fresh read, up to this many times. */
#define OXP_NOGIL_ATTEMPTS 4

/* One frame as read, before it is resolved to a function and line. */
typedef struct {
    uintptr_t frame;   /* its address */
    uintptr_t code;
    uintptr_t instr;
    uintptr_t func;
    uintptr_t globals;
    oxp_frame_kind_t kind; /* OXP_FRAME_FUNCTION or OXP_FRAME_GENERATOR */
    int32_t live;      /* slot of the live-frame table that resolves it, or -1 */
} oxp_rawframe_t;

/* A copy of (the used part of) a data-stack chunk. */
typedef struct {
    uintptr_t addr; /* where the chunk lives */
    size_t len;     /* bytes copied */
    char *copy;     /* Owned */
    size_t cap;
} oxp_chunkcopy_t;

/* How a thread's walk ended. */
typedef enum {
    OXP_WALK_NONE = 0, /* no Python frame (starting, ending, or between calls): nothing to record */
    OXP_WALK_IDLE,     /* cpu mode: no CPU used since the last tick */
    OXP_WALK_FRAMES,   /* raw frames [first, first + n) */
    OXP_WALK_MEMO,     /* the same frames as at its last sample: memo slot `memo` */
    OXP_WALK_FAILED,   /* `why` */
    OXP_WALK_GONE      /* not a thread of this process (sampler.h, oxp_sampler_thread_here) */
} oxp_walk_status_t;

/* One thread of a tick. */
typedef struct {
    uintptr_t addr;           /* its thread state */
    oxp_pythread_t t;         /* the thread state, decoded */
    oxp_walk_status_t status;
    oxp_drop_t why;           /* OXP_WALK_FAILED: the drop reason */
    size_t first;             /* OXP_WALK_FRAMES */
    uint32_t n;
    int truncated;            /* the chain was longer than OXP_NOGIL_MAX_WALK */
    int attempts;             /* walks done this tick */
    uint64_t hash;            /* of its raw frames */
    int memo;                 /* OXP_WALK_MEMO */
    uint64_t cpu_ns;          /* cpu mode: CPU used since the last tick */
    int idle;                 /* wall mode: it had not run since the previous tick */
    uintptr_t context;        /* its current Context when its frames were read (label key) */
} oxp_threadwalk_t;

/* Frames seen at the previous tick, by (frame address, code object,
 * instruction), with what they resolved to.  A frame found again with all
 * three unchanged is the same live frame (or one pushed identically at the
 * same place), which holds its code object alive: it needs no header read.
 * Typically most of a busy thread's stack, all of an idle one's. */
typedef struct {
    uintptr_t frame, code, instr; /* key; frame == 0: empty */
    uint64_t generation; /* database generation of func */
    uint64_t tick;       /* last tick it was seen */
    oxp_id_t func;       /* OXP_NO_ID: the frame is skipped (not started yet) */
    int32_t line;
    uint8_t own;         /* ox_profile's own code */
} oxp_live_t;

#define OXP_LIVE_SLOTS 16384u
#define OXP_LIVE_PROBES 8

/* What a thread's stack looked like and resolved to at its last sample.  A
 * thread whose frames (addresses, code objects, instructions) are all the
 * same at the next tick, typically one blocked in a call, is recorded from
 * this without re-reading its code objects: while its frames live they hold
 * their code objects, so those cannot have been freed and reused. */
typedef struct {
    uint64_t native_id; /* 0 = empty */
    uint64_t hash;      /* of the raw frames */
    uint64_t db_generation;
    uint64_t last_tick;
    uint32_t depth;     /* resolved frames */
    uint32_t cap;
    oxp_frame_t *frames; /* Owned */
} oxp_memo_t;

#define OXP_MEMO_SLOTS 256

/* A distinct code object of the tick, and its header. */
typedef struct {
    uintptr_t code; /* 0 = empty */
    uint32_t hdr;   /* index into headers, codes and code_ok */
} oxp_codeslot_t;

/* The scratch of one sampler. */
typedef struct {
    /* The thread list: raw copies and what each walk found. */
    char *tstates;               /* OXP_NOGIL_MAX_THREADS * OXP_TSTATE_SIZE */
    oxp_threadwalk_t *threads;   /* OXP_NOGIL_MAX_THREADS */
    int nthreads;
    int prev_nthreads;           /* length of the last tick's list */
    uint64_t *recorded;          /* native ids recorded this tick */
    int *retry;                  /* threads to walk again after the record pass */

    /* Raw frames of every thread of the tick, and per distinct code object
     * its header: all sized for raw_cap frames. */
    oxp_rawframe_t *raw;
    size_t raw_cap;
    oxp_codeslot_t *slots;       /* 2 * raw_cap: the tick's code objects */
    char *headers;               /* raw_cap * OXP_CODE_HEADER_SIZE */
    oxp_pycode_t *codes;         /* raw_cap: the headers, decoded */
    uint8_t *code_ok;            /* raw_cap: read, and a code object */
    /* Batched reads: segments and whether each was read. */
    struct iovec *local, *remote; /* raw_cap each */
    uint8_t *seg_ok;              /* raw_cap */

    /* Chunks of the thread being walked: [0] its current one, then older. */
    oxp_chunkcopy_t chunks[OXP_NOGIL_MAX_CHUNKS];

    oxp_memo_t memo[OXP_MEMO_SLOTS];
    oxp_live_t *live; /* OXP_LIVE_SLOTS */
} oxp_nogil_t;

/* -- stackwalk.c ---------------------------------------------------------- */

/* Room for `need` raw frames in the tick (and the per-frame arrays).  0 / -1. */
int oxp_nogil_reserve(oxp_nogil_t *st, size_t need);
/* Walks thread tw's frame chain into st->raw from `first`, leaf first,
 * following its current frame afresh; with `reread`, from a fresh copy of
 * its thread state too (which must still belong to `interp`).  Sets
 * tw->status (FRAMES, NONE or FAILED), tw->n, tw->truncated. */
void oxp_nogil_walk(oxp_nogil_t *st, oxp_threadwalk_t *tw, size_t first, uintptr_t interp, int reread);
/* Reads and decodes the header of every distinct code object of
 * raw[0, n) that is not resolved through the live-frame table; returns the
 * slot mask for oxp_nogil_code. */
uint32_t oxp_nogil_read_headers(oxp_nogil_t *st, size_t n);
/* The decoded header of a code object of the last oxp_nogil_read_headers,
 * or NULL if it could not be read or is not a code object. */
const oxp_pycode_t *oxp_nogil_code(const oxp_nogil_t *st, uint32_t mask, uintptr_t code);

/* -- memo.c --------------------------------------------------------------- */

uint64_t oxp_nogil_hash(const oxp_rawframe_t *raw, uint32_t n);
/* Marks the frames found unchanged since the previous tick (raw[i].live). */
void oxp_nogil_live_mark(oxp_nogil_t *st, oxp_rawframe_t *raw, uint32_t n, uint64_t tick);
/* Remembers what a frame resolved to. */
void oxp_nogil_live_store(oxp_nogil_t *st, const oxp_rawframe_t *r, oxp_id_t func, int32_t line, int own,
                          uint64_t generation, uint64_t tick);
/* The memo slot of thread native_id if its last stack had this hash, else
 * -1; *changed says whether it had another one (0 when unknown). */
int oxp_nogil_memo_find(oxp_nogil_t *st, uint64_t native_id, uint64_t hash, int *changed);
/* Remembers what thread native_id's stack (with this hash) resolved to. */
void oxp_nogil_memo_store(oxp_nogil_t *st, uint64_t native_id, uint64_t hash, const oxp_frame_t *frames,
                          uint32_t depth, uint64_t generation, uint64_t tick);

/* -- pyread.c ------------------------------------------------------------- */

/* Set once, with the GIL held, before any capture: the interned "__name__"
 * (module dicts use that very object as the key).  0 / -1 with an exception. */
int oxp_nogil_pyread_init(void);
/* The cache entry of a code object whose header was read and decoded: the
 * cached one if its guard still holds, else a new one, with its function
 * interned in db (db->lock held).  0; -1 when its strings or line table
 * could not be read; -2 when the database is over its cap. */
int oxp_nogil_resolve(oxp_sampler_t *s, oxp_db_t *db, uintptr_t code_addr, const oxp_pycode_t *c,
                      uintptr_t func, uintptr_t globals, oxp_code_entry_t **out);

#endif
