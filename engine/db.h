/* The profile database: interned strings, functions, stacks, threads and hit
 * counts per (thread, label, stack).  Plain C: it holds no PyObject and needs
 * no GIL, so the sampler thread can write it while Python reads it.  Memory is
 * bounded by a cap; past it, samples that would need a new entry are counted
 * in one overflow bucket instead. */
#ifndef OXP_DB_H
#define OXP_DB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef uint32_t oxp_id_t;
#define OXP_NO_ID UINT32_MAX

/* One frame of a stack: a function id and the line executing in it. */
typedef struct {
    oxp_id_t func;
    int32_t line;
} oxp_frame_t;

/* A function, identified by all of its fields (ids into the string table). */
typedef struct {
    oxp_id_t name;      /* co_name */
    oxp_id_t qualname;  /* co_qualname */
    oxp_id_t module;    /* the defining module's __name__ */
    oxp_id_t filename;  /* co_filename */
    int32_t firstlineno;
} oxp_func_t;

/* A profiled thread: identity is (process, ident, native_id) because either
 * id alone is reused by the OS once a thread ends, and forked processes share
 * idents. */
typedef struct {
    uint64_t ident;     /* threading.get_ident() (pthread_t) */
    uint64_t native_id; /* kernel TID */
    oxp_id_t name;      /* string id of threading.Thread.name, or OXP_NO_ID */
    oxp_id_t process;   /* index of its process in a merged profile (share.h), else OXP_NO_ID */
} oxp_thread_t;

/* A stack: frames[offset .. offset + depth), leaf first. */
typedef struct {
    uint32_t offset;
    uint32_t depth;
} oxp_stack_t;

/* Hits for one (thread, label, stack, idle). */
typedef struct {
    oxp_id_t thread;
    oxp_id_t label; /* string id, or OXP_NO_ID when the thread had no label */
    oxp_id_t stack;
    uint8_t idle;   /* wall mode: the thread had not run since the previous tick */
    uint64_t hits;     /* samples */
    uint64_t gil_hits; /* samples in which the thread held the GIL */
    uint64_t cpu_ns;   /* CPU time charged to these samples (cpu mode) */
} oxp_count_t;

#include "index.h"


/* A growable array whose bytes are charged to the database's budget. */
typedef struct {
    void *data;
    size_t len; /* elements in use */
    size_t cap; /* elements allocated */
} oxp_vec_t;

typedef struct oxp_db {
    /* Guards every field below when the database is shared with a sampler
     * thread.  Lock order: the GIL (if held) before this lock; never wait for
     * the GIL while holding it. */
    pthread_mutex_t lock;

    /* Strings: chars holds NUL-terminated UTF-8; str_off[i] is where string i
     * starts. */
    oxp_vec_t chars;    /* char */
    oxp_vec_t str_off;  /* uint32_t */
    oxp_index_t str_index;

    oxp_vec_t funcs; /* oxp_func_t */
    oxp_index_t func_index;

    oxp_vec_t frames; /* oxp_frame_t, the arena behind stacks */
    oxp_vec_t stacks; /* oxp_stack_t */
    oxp_index_t stack_index;

    oxp_vec_t threads; /* oxp_thread_t */
    oxp_index_t thread_index;

    oxp_vec_t counts; /* oxp_count_t */
    oxp_index_t count_index;

    /* Samples that arrived once the cap was reached and needed a new entry. */
    uint64_t overflow_hits;
    uint64_t overflow_gil_hits;
    uint64_t overflow_cpu_ns;

    uint64_t total_hits; /* every sample recorded, overflow included */
    size_t bytes;        /* bytes allocated by the tables above */
    size_t cap_bytes;    /* the budget for `bytes` */
    uint64_t generation; /* bumped by oxp_db_clear: ids from before are stale */
} oxp_db_t;

/* Smallest cap accepted, so the empty tables always fit. */
#define OXP_DB_MIN_CAP ((size_t)64 * 1024)
#define OXP_DB_DEFAULT_CAP ((size_t)32 * 1024 * 1024)
/* Deepest stack kept; deeper ones keep their leaf-most frames. */
#define OXP_MAX_DEPTH 2048

/* All functions below return 0 on success and -1 on failure (out of budget or
 * out of memory), set no Python exception, and expect the caller to hold
 * db->lock where the database is shared (the `_unlocked` convention is
 * implied for every function taking oxp_db_t *). */
int oxp_db_init(oxp_db_t *db, size_t cap_bytes);
void oxp_db_free(oxp_db_t *db);
void oxp_db_clear(oxp_db_t *db);
/* A deep copy (with a fresh, unlocked mutex) for snapshots. */
int oxp_db_copy(oxp_db_t *dst, const oxp_db_t *src);

int oxp_db_intern(oxp_db_t *db, const char *s, size_t len, oxp_id_t *out);
const char *oxp_db_str(const oxp_db_t *db, oxp_id_t id);
int oxp_db_func(oxp_db_t *db, const oxp_func_t *f, oxp_id_t *out);
int oxp_db_stack(oxp_db_t *db, const oxp_frame_t *frames, uint32_t depth, oxp_id_t *out);
int oxp_db_thread(oxp_db_t *db, uint64_t ident, uint64_t native_id, oxp_id_t *out);
/* The same, for a thread of process `process` (merging several processes). */
int oxp_db_thread_in(oxp_db_t *db, oxp_id_t process, uint64_t ident, uint64_t native_id, oxp_id_t *out);
int oxp_db_thread_set_name(oxp_db_t *db, oxp_id_t thread, const char *name, size_t len);

/* What a sample says about its thread besides its stack. */
typedef struct {
    int held_gil;    /* it held the GIL */
    int idle;        /* wall mode: it had not run since the previous tick */
    uint64_t cpu_ns; /* cpu mode: CPU time charged to the sample */
} oxp_sample_info_t;

/* Count one sample.  When any entry it needs cannot be added within the cap,
 * the sample goes to the overflow bucket and the function still returns 0. */
int oxp_db_add_sample(oxp_db_t *db, oxp_id_t thread, oxp_id_t label, const oxp_frame_t *frames,
                      uint32_t depth, const oxp_sample_info_t *info);
/* Count one sample in the overflow bucket (an entry it needed did not fit;
 * its idle flag is not kept there). */
void oxp_db_add_overflow(oxp_db_t *db, const oxp_sample_info_t *info);
/* Add `hits` to one row directly (used to rebuild a database from raw data). */
int oxp_db_add_count(oxp_db_t *db, oxp_id_t thread, oxp_id_t label, oxp_id_t stack, int idle, uint64_t hits,
                     uint64_t gil_hits, uint64_t cpu_ns);

static inline size_t oxp_db_nstrings(const oxp_db_t *db) { return db->str_off.len; }
static inline const oxp_func_t *oxp_db_funcs(const oxp_db_t *db) { return (const oxp_func_t *)db->funcs.data; }
static inline const oxp_stack_t *oxp_db_stacks(const oxp_db_t *db) { return (const oxp_stack_t *)db->stacks.data; }
static inline const oxp_frame_t *oxp_db_frames(const oxp_db_t *db) { return (const oxp_frame_t *)db->frames.data; }
static inline const oxp_thread_t *oxp_db_threads(const oxp_db_t *db) { return (const oxp_thread_t *)db->threads.data; }
static inline const oxp_count_t *oxp_db_counts(const oxp_db_t *db) { return (const oxp_count_t *)db->counts.data; }

#endif
