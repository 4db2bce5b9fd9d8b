/* The sampler thread: schedule, pause/resume, stop/join, statistics, and the
 * registry of samplers used at fork and at interpreter exit. */
#define _GNU_SOURCE
#include "sampler.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "labels.h"
#include "saferead.h"

const char *const oxp_drop_names[OXP_DROP_NREASONS] = {
    "unreadable", "invalid", "thread_list", "no_gil", "no_memory", "torn",
};

int64_t oxp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec to_timespec(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

/* -- registry ------------------------------------------------------------ */

/* Guards registry_head and the `next` links. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static oxp_sampler_t *registry_head;

void oxp_registry_add(oxp_sampler_t *s)
{
    pthread_mutex_lock(&registry_lock);
    s->next = registry_head;
    registry_head = s;
    pthread_mutex_unlock(&registry_lock);
}

void oxp_registry_remove(oxp_sampler_t *s)
{
    pthread_mutex_lock(&registry_lock);
    for (oxp_sampler_t **p = &registry_head; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    s->next = NULL;
    pthread_mutex_unlock(&registry_lock);
}

void oxp_registry_stop_all(void)
{
    /* Stop one at a time without holding the registry lock while joining. */
    for (;;) {
        oxp_sampler_t *victim = NULL;
        pthread_mutex_lock(&registry_lock);
        for (oxp_sampler_t *s = registry_head; s; s = s->next) {
            if (oxp_sampler_is_alive(s)) {
                victim = s;
                break;
            }
        }
        pthread_mutex_unlock(&registry_lock);
        if (victim == NULL) {
            return;
        }
        oxp_sampler_stop(victim);
    }
}

/* fork: take every lock the sampler threads can hold, so that the child does
 * not inherit one held by a thread that no longer exists.  Order: registry,
 * then per sampler its state lock and database lock, then the labels. */
void oxp_atfork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (oxp_sampler_t *s = registry_head; s; s = s->next) {
        pthread_mutex_lock(&s->state_lock);
        pthread_mutex_lock(&s->db->lock);
    }
    oxp_labels_lock();
}

void oxp_atfork_parent(void)
{
    oxp_labels_unlock();
    for (oxp_sampler_t *s = registry_head; s; s = s->next) {
        pthread_mutex_unlock(&s->db->lock);
        pthread_mutex_unlock(&s->state_lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

void oxp_atfork_child(void)
{
    oxp_labels_after_fork_child();
    oxp_saferead_after_fork_child();
    for (oxp_sampler_t *s = registry_head; s; s = s->next) {
        pthread_mutex_init(&s->db->lock, NULL);
        pthread_mutex_init(&s->state_lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        memset(&s->wake, 0, sizeof(s->wake));
        pthread_cond_init(&s->wake, &attr);
        pthread_condattr_destroy(&attr);
        memset(&s->tick_done, 0, sizeof(s->tick_done));
        pthread_cond_init(&s->tick_done, NULL);
        s->in_tick = 0;
        if (s->thread_started) {
            /* The thread does not exist here; never join it.  Python's
             * after-fork hook restarts it (profiler.py): threads cannot be
             * created safely before CPython has cleaned up after the fork. */
            s->rearm = s->state == OXP_RUNNING;
            s->rearm_paused = s->paused;
            s->thread_started = 0;
            s->thread_up = 0;
            s->forked = 1;
            s->state = OXP_STOPPED;
            /* Its tstate was for a thread CPython has already forgotten. */
            s->own_tstate = NULL;
        }
        s->cpu_cap = 0;
        PyMem_RawFree(s->cpu);
        s->cpu = NULL;
    }
    pthread_mutex_init(&registry_lock, NULL);
}

/* -- lifecycle ----------------------------------------------------------- */

int oxp_sampler_init(oxp_sampler_t *s, oxp_db_t *db, oxp_mode_t mode, oxp_backend_t backend,
                     int64_t interval_ns)
{
    memset(s, 0, sizeof(*s));
    pthread_condattr_t attr;
    if (pthread_mutex_init(&s->state_lock, NULL) != 0 || pthread_condattr_init(&attr) != 0) {
        PyErr_SetString(PyExc_OSError, "ox_profile: cannot initialise the sampler's lock");
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&s->wake, &attr);
    if (rc == 0 && pthread_cond_init(&s->tick_done, NULL) != 0) {
        pthread_cond_destroy(&s->wake);
        rc = -1;
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_destroy(&s->state_lock);
        PyErr_SetString(PyExc_OSError, "ox_profile: cannot initialise the sampler's condition");
        return -1;
    }
    if (oxp_codecache_init(&s->cache) < 0) {
        pthread_cond_destroy(&s->tick_done);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->state_lock);
        PyErr_NoMemory();
        return -1;
    }
    s->db = db;
    s->mode = mode;
    s->backend = backend;
    s->interval_ns = interval_ns;
    s->state = OXP_STOPPED;
    s->paused = 1;
    s->interp = PyInterpreterState_Get();
    oxp_registry_add(s);
    return 0;
}

void oxp_sampler_fini(oxp_sampler_t *s)
{
    oxp_sampler_stop(s);
    oxp_registry_remove(s);
    oxp_capture_nogil_free(s);
    oxp_codecache_free(&s->cache);
    PyMem_RawFree(s->scratch.frames);
    PyMem_RawFree(s->cpu);
    pthread_cond_destroy(&s->tick_done);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->state_lock);
}

int oxp_sampler_is_alive(oxp_sampler_t *s)
{
    pthread_mutex_lock(&s->state_lock);
    int alive = s->thread_started && s->state == OXP_RUNNING;
    pthread_mutex_unlock(&s->state_lock);
    return alive;
}

void oxp_sampler_set_paused(oxp_sampler_t *s, int paused)
{
    /* Pausing waits for a capture in progress, so that nothing is recorded
     * once pause() has returned.  The GIL is released meanwhile: the gil
     * backend's capture needs it to finish. */
    int gil = paused && PyGILState_Check();
    PyThreadState *saved = gil ? PyEval_SaveThread() : NULL;
    pthread_mutex_lock(&s->state_lock);
    if (s->paused != paused) {
        s->paused = paused;
        s->reschedule = 1;
        pthread_cond_signal(&s->wake);
    }
    while (paused && s->in_tick && s->thread_started) {
        pthread_cond_wait(&s->tick_done, &s->state_lock);
    }
    pthread_mutex_unlock(&s->state_lock);
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
}

void oxp_sampler_set_interval(oxp_sampler_t *s, int64_t interval_ns)
{
    pthread_mutex_lock(&s->state_lock);
    s->interval_ns = interval_ns;
    s->reschedule = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->state_lock);
}

/* One wakeup's work: capture and record, then account for it (and for the
 * `missed` ticks it came too late for). */
static void sampler_tick(oxp_sampler_t *s, int64_t tick_start, uint64_t tick_no, uint64_t missed)
{
    int64_t waited = 0;
    if (s->backend == OXP_BACKEND_NOGIL) {
        oxp_capture_nogil_tick(s, tick_no);
    } else {
        waited = oxp_capture_gil_tick_from_thread(s, tick_no);
    }
    int64_t end = oxp_now_ns();
    int64_t spent = end - tick_start - waited;
    uint64_t cost = spent > 0 ? (uint64_t)spent : 0;
    pthread_mutex_lock(&s->db->lock);
    oxp_stats_t *st = &s->stats;
    if (missed) {
        st->late_wakeups++;
        st->missed_ticks += missed;
    }
    if (st->ticks > 0 && s->resumed) {
        /* The first tick after a pause: the gap is not an interval, and
         * the rate and CPU share count only the time spent running. */
        int64_t gap = tick_start - st->last_tick_ns - s->interval_ns;
        st->paused_ns += gap > 0 ? gap : 0;
    } else if (st->ticks > 0) {
        double x = (double)(tick_start - st->last_tick_ns);
        st->interval_n++;
        double delta = x - st->interval_mean_ns;
        st->interval_mean_ns += delta / (double)st->interval_n;
        st->interval_m2 += delta * (x - st->interval_mean_ns);
    } else {
        st->first_tick_ns = tick_start;
    }
    st->last_tick_ns = tick_start;
    s->resumed = 0;
    st->ticks++;
    st->capture_total_ns += cost;
    st->gil_wait_total_ns += (uint64_t)(waited > 0 ? waited : 0);
    if (cost > st->capture_max_ns) {
        st->capture_max_ns = cost;
    }
    pthread_mutex_unlock(&s->db->lock);
}

static void *sampler_main(void *arg)
{
    oxp_sampler_t *s = arg;
    /* Wake precisely: the default 50 µs timer slack would dominate 100 µs ticks. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    prctl(PR_SET_NAME, "ox_profile", 0UL, 0UL, 0UL);
    uint64_t tid = (uint64_t)syscall(SYS_gettid);
    oxp_saferead_unblock_faults();
    if (s->backend == OXP_BACKEND_NOGIL) {
        int guarded = oxp_saferead_thread_begin();
        pthread_mutex_lock(&s->db->lock);
        s->guarded = guarded;
        pthread_mutex_unlock(&s->db->lock);
    }
    pthread_mutex_lock(&s->db->lock);
    s->sampler_native_id = tid;
    pthread_mutex_unlock(&s->db->lock);

    uint64_t tick_no = 0;
    /* How early to ask the timer for each tick: a running average of how late
     * wake-ups arrive after the deadline asked for (on a VM, 30-60 us at
     * idle; bench/timer_floor.c measures it).  Asking that much early puts
     * the wake-ups around the grid's slots instead of after them, so a
     * wake-up late by one interval (a skipped slot) becomes rare at 10 kHz.
     * Kept to half the interval at most.  Local to this thread. */
    int64_t lead = 0;
    pthread_mutex_lock(&s->state_lock);
    s->thread_up = 1;
    pthread_cond_broadcast(&s->tick_done);
    int64_t next = oxp_now_ns() + s->interval_ns;
    while (s->state == OXP_RUNNING) {
        if (s->paused) {
            pthread_cond_wait(&s->wake, &s->state_lock);
            s->resumed = 1;
            next = oxp_now_ns() + s->interval_ns;
            s->reschedule = 0;
            continue;
        }
        if (s->reschedule) {
            s->reschedule = 0;
            next = oxp_now_ns() + s->interval_ns;
        }
        int64_t asked = next - lead;
        struct timespec deadline = to_timespec(asked);
        int rc = pthread_cond_timedwait(&s->wake, &s->state_lock, &deadline);
        if (s->state != OXP_RUNNING) {
            break;
        }
        if (s->paused || s->reschedule) {
            continue;
        }
        int64_t now = oxp_now_ns();
        if (rc != ETIMEDOUT && now < asked) {
            continue; /* spurious wakeup */
        }
        int64_t interval = s->interval_ns;
        int64_t wake_late = now - asked;
        if (wake_late < 10 * interval) { /* a long stall says nothing of the timer */
            lead += (wake_late - lead) / 8;
            if (lead > interval / 2) {
                lead = interval / 2;
            }
            if (lead < 0) {
                lead = 0;
            }
        }
        int64_t late = now - next;
        uint64_t missed = 0;
        if (late > interval) {
            missed = (uint64_t)(late / interval);
        }
        next += interval;
        if (late > 10 * interval) {
            next = now + interval; /* resynchronise after a long stall */
        } else {
            while (next <= now) {
                next += interval; /* skip ticks we cannot catch up on */
            }
        }
        s->in_tick = 1;
        pthread_mutex_unlock(&s->state_lock);

        sampler_tick(s, now, ++tick_no, missed);

        pthread_mutex_lock(&s->state_lock);
        s->in_tick = 0;
        pthread_cond_broadcast(&s->tick_done);
    }
    pthread_mutex_unlock(&s->state_lock);
    oxp_saferead_thread_end();
    oxp_capture_gil_thread_exit(s);
    /* Its final CPU time, for the statistics once it is gone. */
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0) {
        pthread_mutex_lock(&s->db->lock);
        s->stats.thread_cpu_ns = (uint64_t)cpu.tv_sec * 1000000000ULL + (uint64_t)cpu.tv_nsec;
        pthread_mutex_unlock(&s->db->lock);
    }
    return NULL;
}

int oxp_sampler_start(oxp_sampler_t *s, int paused)
{
    pthread_mutex_lock(&s->state_lock);
    if (s->thread_started) {
        pthread_mutex_unlock(&s->state_lock);
        PyErr_SetString(PyExc_RuntimeError, "ox_profile: the sampler is already running");
        return -1;
    }
    s->state = OXP_RUNNING;
    s->paused = paused;
    s->reschedule = 0;
    s->forked = 0;
    s->rearm = 0;
    s->thread_up = 0;
    if (s->backend == OXP_BACKEND_NOGIL) {
        /* Without it the capture reads through system calls: slower, as safe. */
        (void)oxp_saferead_install();
    }

    /* The thread must never run a Python signal handler: block everything
     * while creating it so that it inherits a full mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&s->thread, &attr, sampler_main, s);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        s->state = OXP_STOPPED;
        pthread_mutex_unlock(&s->state_lock);
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    s->thread_started = 1;
    pthread_mutex_unlock(&s->state_lock);
    /* Return once the thread runs its loop, so that sampling (or resume())
     * takes effect at once even when a loaded machine is slow to schedule a
     * new thread; never longer than 2 s.  The GIL is released meanwhile and
     * never waited for while the state lock is held. */
    PyThreadState *saved = PyGILState_Check() ? PyEval_SaveThread() : NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline); /* tick_done's clock */
    deadline.tv_sec += 2;
    pthread_mutex_lock(&s->state_lock);
    while (!s->thread_up && s->state == OXP_RUNNING) {
        if (pthread_cond_timedwait(&s->tick_done, &s->state_lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s->state_lock);
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    return 0;
}

void oxp_sampler_stop(oxp_sampler_t *s)
{
    pthread_mutex_lock(&s->state_lock);
    if (!s->thread_started) {
        s->state = OXP_STOPPED;
        pthread_mutex_unlock(&s->state_lock);
        return;
    }
    s->state = OXP_EXITING;
    pthread_cond_signal(&s->wake);
    pthread_t thread = s->thread;
    s->thread_started = 0;
    pthread_mutex_unlock(&s->state_lock);

    /* The gil backend may be waiting for the GIL: let it have it. */
    if (PyGILState_Check()) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(thread, NULL);
        Py_END_ALLOW_THREADS
    } else {
        pthread_join(thread, NULL);
    }
    pthread_mutex_lock(&s->state_lock);
    s->state = OXP_STOPPED;
    pthread_mutex_unlock(&s->state_lock);
}

/* -- recording ----------------------------------------------------------- */

oxp_frame_t *oxp_scratch_frames(oxp_scratch_t *sc, size_t n)
{
    if (n > sc->frames_cap) {
        size_t cap = sc->frames_cap ? sc->frames_cap : 256;
        while (cap < n) {
            cap *= 2;
        }
        oxp_frame_t *f = PyMem_RawRealloc(sc->frames, cap * sizeof(oxp_frame_t));
        if (f == NULL) {
            return NULL;
        }
        sc->frames = f;
        sc->frames_cap = cap;
    }
    return sc->frames;
}

void oxp_sampler_record_unlocked(oxp_sampler_t *s, oxp_db_t *db, uint64_t ident, uint64_t native_id,
                                 const char *label, size_t label_len, const oxp_frame_t *frames,
                                 uint32_t depth, const oxp_sample_info_t *info)
{
    oxp_id_t thread, label_id = OXP_NO_ID;
    if (oxp_db_thread(db, ident, native_id, &thread) < 0 ||
        (label_len > 0 && oxp_db_intern(db, label, label_len, &label_id) < 0)) {
        oxp_db_add_overflow(db, info);
    } else {
        oxp_db_add_sample(db, thread, label_id, frames, depth, info);
    }
    if (s != NULL) {
        s->stats.samples++;
        s->stats.gil_samples += info->held_gil ? 1 : 0;
        s->stats.idle_samples += info->idle ? 1 : 0;
        if (depth > OXP_MAX_DEPTH) {
            s->stats.truncated++;
        }
    }
}

uint64_t oxp_thread_cpu_ns(uint64_t native_id)
{
    /* The kernel's per-thread CPU clock id: ((~tid) << 3) | CPUCLOCK_SCHED |
     * CPUCLOCK_PERTHREAD; it needs no pthread_t, which may already be dead. */
    clockid_t clk = (clockid_t)(((~(unsigned int)native_id) << 3) | 6u);
    struct timespec ts;
    if (native_id == 0 || clock_gettime(clk, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The clock entry of a thread, made on first sight (a stale one is reused),
 * or NULL when the table cannot hold it. */
static oxp_cpuclock_t *cpu_entry(oxp_sampler_t *s, uint64_t native_id, uint64_t tick)
{
    if (s->cpu_cap == 0) {
        s->cpu = PyMem_RawCalloc(256, sizeof(oxp_cpuclock_t));
        if (s->cpu == NULL) {
            return NULL;
        }
        s->cpu_cap = 256;
    }
    oxp_cpuclock_t *free_slot = NULL, *stale = NULL;
    for (size_t i = 0; i < s->cpu_cap; i++) {
        oxp_cpuclock_t *c = &s->cpu[i];
        if (c->native_id == native_id) {
            c->seen_tick = tick;
            return c;
        }
        if (c->native_id == 0 && free_slot == NULL) {
            free_slot = c;
        } else if (c->native_id != 0 && tick > c->seen_tick + 1000 && stale == NULL) {
            stale = c;
        }
    }
    oxp_cpuclock_t *slot = free_slot ? free_slot : stale;
    if (slot != NULL) {
        memset(slot, 0, sizeof(*slot));
        slot->native_id = native_id;
        slot->seen_tick = tick;
    }
    return slot;
}

/* stale -> real native ids (see sampler.h).  Written by Python (GIL held,
 * rarely), read by sampler threads at every tick: atomics, the real id
 * stored before the stale one that makes an entry visible. */
#define OXP_ALIASES 4
static _Atomic uint64_t alias_stale[OXP_ALIASES];
static _Atomic uint64_t alias_real[OXP_ALIASES];
static unsigned alias_next; /* guarded by the GIL */

void oxp_native_alias_set(uint64_t stale, uint64_t real)
{
    unsigned i = alias_next++ % OXP_ALIASES;
    atomic_store(&alias_stale[i], 0);
    atomic_store(&alias_real[i], real);
    atomic_store(&alias_stale[i], stale);
}

uint64_t oxp_native_alias(uint64_t native_id)
{
    for (unsigned i = 0; i < OXP_ALIASES; i++) {
        if (native_id != 0 && atomic_load_explicit(&alias_stale[i], memory_order_acquire) == native_id) {
            uint64_t real = atomic_load_explicit(&alias_real[i], memory_order_relaxed);
            return real != 0 ? real : native_id;
        }
    }
    return native_id;
}

int oxp_sampler_thread_here(oxp_sampler_t *s, uint64_t native_id, uint64_t tick)
{
    if (native_id == 0) {
        return 1;
    }
    oxp_cpuclock_t *c = cpu_entry(s, native_id, tick);
    if (c == NULL) {
        return 1;
    }
    if (c->here_tick == 0 || tick - c->here_tick >= 1000) {
        c->gone = oxp_thread_cpu_ns(native_id) == 0;
        c->here_tick = tick;
    }
    return !c->gone;
}

uint64_t oxp_sampler_cpu_delta(oxp_sampler_t *s, uint64_t native_id, uint64_t tick)
{
    uint64_t now = oxp_thread_cpu_ns(native_id);
    oxp_cpuclock_t *c = now != 0 ? cpu_entry(s, native_id, tick) : NULL;
    if (c == NULL) {
        return 0;
    }
    uint64_t delta = c->read_tick != 0 && now > c->last_ns ? now - c->last_ns : 0;
    c->last_ns = now;
    c->read_tick = tick;
    return delta;
}

int oxp_sampler_ran(oxp_sampler_t *s, uint64_t native_id, uint64_t tick, int known)
{
    oxp_cpuclock_t *c = cpu_entry(s, native_id, tick);
    if (c == NULL) {
        return 1;
    }
    /* The last reading is a baseline only if it was taken at the previous tick. */
    int consecutive = c->read_tick != 0 && c->read_tick + 1 == tick;
    if (known) {
        c->ran = 1;
        c->read_tick = 0; /* no reading: no baseline for the next tick */
        return 1;
    }
    uint64_t now = oxp_thread_cpu_ns(native_id);
    if (now == 0 && native_id != 0) {
        return -1; /* no such thread here: a thread state a fork left behind */
    }
    int64_t at = oxp_now_ns();
    /* Two ticks a few microseconds apart (the gil backend takes the GIL
     * again before the thread it took it from could run): too soon to
     * tell, keep the last answer and the last reading. */
    if (consecutive && now == c->last_ns && at - c->read_ns < s->interval_ns / 4) {
        c->read_tick = tick;
        return c->ran;
    }
    c->ran = !consecutive || now != c->last_ns;
    c->last_ns = now;
    c->read_ns = at;
    c->read_tick = tick;
    return c->ran;
}
