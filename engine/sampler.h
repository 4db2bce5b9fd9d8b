/* The sampler: a native thread that wakes on an absolute schedule and asks a
 * capture backend for every Python thread's stack, recording into a database.
 * Also the process-wide registry of samplers that fork and exit handling use. */
#ifndef OXP_SAMPLER_H
#define OXP_SAMPLER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>

#include "codecache.h"
#include "db.h"

typedef enum { OXP_BACKEND_GIL = 0, OXP_BACKEND_NOGIL = 1 } oxp_backend_t;
typedef enum { OXP_MODE_WALL = 0, OXP_MODE_CPU = 1 } oxp_mode_t;

/* Why a thread's sample was not recorded. */
typedef enum {
    OXP_DROP_READ = 0,    /* memory could not be read (stale pointer) */
    OXP_DROP_INVALID,     /* a frame, code object or string failed validation */
    OXP_DROP_THREADS,     /* thread list too long or cyclic */
    OXP_DROP_NO_GIL,      /* gil backend: could not take the GIL (finalizing) */
    OXP_DROP_NO_MEMORY,   /* scratch buffers could not grow */
    OXP_DROP_TORN,        /* nogil: a generator stopped running while its frames were read, every time */
    OXP_DROP_NREASONS
} oxp_drop_t;

extern const char *const oxp_drop_names[OXP_DROP_NREASONS];

#define OXP_MIN_INTERVAL_NS 50000LL          /* 50 µs */
#define OXP_MAX_INTERVAL_NS 10000000000LL    /* 10 s */

/* Sampler statistics.  Written by the sampler thread, read by Python; every
 * field is guarded by the database lock of the sampler (db->lock). */
typedef struct {
    uint64_t ticks;            /* wakeups that captured */
    uint64_t samples;          /* thread stacks recorded */
    uint64_t gil_samples;      /* ... of which the thread held the GIL */
    uint64_t late_wakeups;     /* wakeups more than one interval late */
    uint64_t missed_ticks;     /* ticks skipped because of lateness */
    uint64_t truncated;        /* stacks deeper than OXP_MAX_DEPTH */
    uint64_t idle_skipped;     /* cpu mode: thread samples skipped as idle */
    uint64_t own_skipped;      /* thread samples skipped: the thread was running ox_profile's own code */
    uint64_t gone_skipped;     /* thread states skipped: their thread is not in this process (left by
                                * a fork made in C, as uWSGI's, in the child's list) */
    uint64_t idle_samples;     /* wall mode: samples of threads that had not run since the previous tick */
    uint64_t dropped[OXP_DROP_NREASONS];
    uint64_t retried;          /* nogil: threads walked again in a tick because a walk failed */
    uint64_t memo_hits;        /* nogil: unchanged stacks recorded without re-reading code objects */
    uint64_t interval_n;       /* Welford accumulators of tick-to-tick time */
    double interval_mean_ns;
    double interval_m2;
    uint64_t capture_total_ns; /* time spent in capture + record (not waiting for the GIL) */
    uint64_t gil_wait_total_ns; /* gil backend: time spent waiting for the GIL */
    uint64_t capture_max_ns;
    uint64_t thread_cpu_ns;    /* the sampler thread's CPU time when it ended (wakeups included) */
    int64_t first_tick_ns;     /* CLOCK_MONOTONIC of the first tick */
    int64_t last_tick_ns;
    int64_t paused_ns;         /* time between first_tick_ns and last_tick_ns spent paused */
    uint64_t cache_misses;     /* code objects resolved (nogil) */
} oxp_stats_t;

/* Per-thread CPU clock readings: cpu mode weights, and whether a thread ran
 * since the previous tick (sampler thread only). */
typedef struct {
    uint64_t native_id; /* 0 = free */
    uint64_t last_ns;   /* its CPU time at read_tick */
    uint64_t read_tick; /* when it was read (0: never) */
    int64_t read_ns;    /* ... in CLOCK_MONOTONIC ns */
    uint64_t seen_tick; /* when the thread was last looked up */
    int ran;            /* what oxp_sampler_ran said last */
    uint64_t here_tick; /* when it was last checked to be a thread of this process (0: never) */
    int gone;           /* ... and it was not */
} oxp_cpuclock_t;

/* Scratch space a tick fills (sampler thread only, or the GIL holder). */
typedef struct {
    oxp_frame_t *frames;
    size_t frames_cap;
} oxp_scratch_t;

enum { OXP_STOPPED = 0, OXP_RUNNING = 1, OXP_EXITING = 2 };

typedef struct oxp_sampler {
    /* Guards state, paused, interval_ns, reschedule, thread_started,
     * thread_up, in_tick. */
    pthread_mutex_t state_lock;
    pthread_cond_t wake; /* signalled on any change of the fields above */
    pthread_cond_t tick_done; /* signalled when in_tick drops to 0, and when the thread is up */
    int in_tick; /* the thread is capturing: pause() waits for it to end */
    int state;
    int paused;
    int reschedule; /* the interval changed: restart the schedule */
    int resumed;    /* sampler thread only: the next tick is the first after a pause */
    int guarded;    /* db->lock: its thread reads with a guarded direct copy (saferead.h) */
    int64_t interval_ns;
    int thread_started; /* `thread` is joinable */
    int thread_up;      /* the thread runs its loop (start() waits for it) */
    pthread_t thread;
    int forked; /* the thread was lost in a fork (child side) */
    int rearm;        /* child side: the thread ran in the parent; Python restarts it (state_lock) */
    int rearm_paused; /* ... and was paused there */

    /* Fixed while the thread runs (set before start). */
    oxp_mode_t mode;
    oxp_backend_t backend;
    PyInterpreterState *interp; /* Borrowed: the interpreter being sampled. */
    oxp_db_t *db; /* Borrowed: owned by the Python Database the Sampler object keeps. */

    oxp_stats_t stats; /* guarded by db->lock */
    uint64_t sampler_native_id; /* TID of the sampler thread, 0 before it runs */

    /* Sampler-thread-only state. */
    oxp_codecache_t cache;
    oxp_scratch_t scratch;
    oxp_cpuclock_t *cpu;
    size_t cpu_cap;
    PyThreadState *own_tstate; /* Owned: created for the gil backend, NULL otherwise. */
    void *nogil_state; /* capture_nogil.c's scratch, opaque here */

    struct oxp_sampler *next; /* registry link, guarded by the registry lock */
} oxp_sampler_t;

/* 0 / -1 with a Python exception (GIL held). */
int oxp_sampler_init(oxp_sampler_t *s, oxp_db_t *db, oxp_mode_t mode, oxp_backend_t backend,
                     int64_t interval_ns);
/* Stops (GIL held; released while joining) and frees. */
void oxp_sampler_fini(oxp_sampler_t *s);
/* Starts the thread.  0 / -1 with a Python exception. */
int oxp_sampler_start(oxp_sampler_t *s, int paused);
/* Asks the thread to end and joins it; releases the GIL while joining. */
void oxp_sampler_stop(oxp_sampler_t *s);
void oxp_sampler_set_paused(oxp_sampler_t *s, int paused);
void oxp_sampler_set_interval(oxp_sampler_t *s, int64_t interval_ns);
int oxp_sampler_is_alive(oxp_sampler_t *s);

/* Records one captured thread stack (caller holds s->db->lock). Frames leaf first. */
void oxp_sampler_record_unlocked(oxp_sampler_t *s, oxp_db_t *db, uint64_t ident, uint64_t native_id,
                                 const char *label, size_t label_len, const oxp_frame_t *frames,
                                 uint32_t depth, const oxp_sample_info_t *info);
/* cpu mode: CPU ns the thread used since the last call (0 on first sight). */
uint64_t oxp_sampler_cpu_delta(oxp_sampler_t *s, uint64_t native_id, uint64_t tick);
/* wall mode: whether the thread ran since the previous tick.  `known`: the
 * caller saw it run (it holds the GIL, its stack changed), so its clock
 * need not be read (a read costs about half a microsecond).  A thread whose
 * clock was not read at the previous tick counts as having run (nothing
 * says otherwise). */
int oxp_sampler_ran(oxp_sampler_t *s, uint64_t native_id, uint64_t tick, int known);
/* Whether native_id is a thread of this process (checked on first sight and
 * every 1000 ticks): a fork made in C, as uWSGI's, leaves the parent's other
 * thread states in the child's interpreter, threads the child does not have. */
int oxp_sampler_thread_here(oxp_sampler_t *s, uint64_t native_id, uint64_t tick);
/* After a fork made in C without Python's after-fork cleanup (uWSGI), the
 * thread that forked keeps the parent's kernel id in its thread state:
 * oxp_native_alias maps such a stale id to the thread's real one, as told by
 * oxp_native_alias_set (Python, in the child).  Process-wide, a few entries. */
void oxp_native_alias_set(uint64_t stale, uint64_t real);
uint64_t oxp_native_alias(uint64_t native_id);
/* CPU time of one of this process's threads (0 if it is gone). */
uint64_t oxp_thread_cpu_ns(uint64_t native_id);
/* Scratch frames of at least n entries, or NULL. */
oxp_frame_t *oxp_scratch_frames(oxp_scratch_t *sc, size_t n);

int64_t oxp_now_ns(void);

/* Registry, fork and exit (module.c installs these). */
void oxp_registry_add(oxp_sampler_t *s);
void oxp_registry_remove(oxp_sampler_t *s);
void oxp_registry_stop_all(void); /* GIL held */
void oxp_atfork_prepare(void);
void oxp_atfork_parent(void);
void oxp_atfork_child(void);

#endif
