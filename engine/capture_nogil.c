/* The GIL-free capture: each tick copies the interpreter's thread list,
 * walks every thread's frames (stackwalk.c), reads the headers of the code
 * objects it has not seen live, then resolves and records under the
 * database lock, with memos for what did not change (memo.c).  Version free:
 * CPython's structures come decoded by the layout layer (layout/).  Runs on
 * the sampler thread: it never takes the GIL, never allocates a Python
 * object and never raises; what fails is counted in the statistics. */
#ifdef OXP_HAVE_NOGIL
#include "layout/layout.h"
#endif
#include "capture.h"

#ifdef OXP_HAVE_NOGIL

#include <stdlib.h>
#include <string.h>

#include "labels.h"
#include "nogil.h"
#include "saferead.h"

/* -- scratch -------------------------------------------------------------- */

static void state_free(oxp_nogil_t *st)
{
    if (st == NULL) {
        return;
    }
    free(st->threads);
    free(st->tstates);
    free(st->recorded);
    free(st->retry);
    free(st->raw);
    free(st->slots);
    free(st->headers);
    free(st->codes);
    free(st->code_ok);
    free(st->local);
    free(st->remote);
    free(st->seg_ok);
    for (int i = 0; i < OXP_NOGIL_MAX_CHUNKS; i++) {
        free(st->chunks[i].copy);
    }
    for (int i = 0; i < OXP_MEMO_SLOTS; i++) {
        free(st->memo[i].frames);
    }
    free(st->live);
    free(st);
}

static oxp_nogil_t *state_get(oxp_sampler_t *s)
{
    if (s->nogil_state != NULL) {
        return s->nogil_state;
    }
    oxp_nogil_t *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL;
    }
    st->threads = calloc(OXP_NOGIL_MAX_THREADS, sizeof(oxp_threadwalk_t));
    st->tstates = malloc(OXP_NOGIL_MAX_THREADS * OXP_TSTATE_SIZE);
    st->recorded = malloc(OXP_NOGIL_MAX_THREADS * sizeof(uint64_t));
    st->retry = malloc(OXP_NOGIL_MAX_THREADS * sizeof(int));
    st->live = calloc(OXP_LIVE_SLOTS, sizeof(oxp_live_t));
    if (!st->threads || !st->tstates || !st->recorded || !st->retry || !st->live ||
        oxp_nogil_reserve(st, OXP_NOGIL_MAX_WALK) < 0) {
        state_free(st);
        return NULL;
    }
    s->nogil_state = st;
    return st;
}

void oxp_capture_nogil_free(oxp_sampler_t *s)
{
    state_free(s->nogil_state);
    s->nogil_state = NULL;
}

/* -- availability ---------------------------------------------------------- */

/* Whether the running interpreter matches the compiled layout: checked once
 * (GIL held), 0 = not yet. */
static int layout_state;
static char layout_why[256];

int oxp_capture_nogil_available(const char **why)
{
    if (layout_state == 0) {
        layout_state = oxp_layout_check(layout_why, sizeof(layout_why)) == 0 ? 1 : -1;
    }
    if (layout_state < 0) {
        *why = layout_why;
        return 0;
    }
    if (oxp_nogil_pyread_init() < 0) {
        PyErr_Clear();
        *why = "out of memory";
        return 0;
    }
    if (oxp_saferead_init() < 0) {
        *why = "neither process_vm_readv nor /proc/self/mem can read this process";
        return 0;
    }
    return 1;
}

const char *oxp_capture_nogil_layout(void)
{
    return OXP_LAYOUT_NAME;
}

PyObject *oxp_capture_nogil_debug_offsets(PyObject *raw)
{
#ifdef OXP_LAYOUT_HAS_DEBUG_OFFSETS
    if (raw == Py_None) {
        /* Every field with the value this build was compiled with. */
        oxp_offset_row_t rows[OXP_NOFFSETS];
        size_t len;
        oxp_layout_offset_rows(oxp_layout_running_offsets(&len), rows);
        PyObject *out = PyList_New(OXP_NOFFSETS);
        for (size_t i = 0; out != NULL && i < OXP_NOFFSETS; i++) {
            PyObject *row = Py_BuildValue("(sK)", rows[i].name, (unsigned long long)rows[i].built);
            if (row == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, (Py_ssize_t)i, row);
        }
        return out;
    }
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes (a copy of _Py_DebugOffsets) or None");
        return NULL;
    }
    char why[256];
    if (oxp_layout_check_offsets(PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw), why, sizeof(why)) < 0) {
        return PyUnicode_FromString(why);
    }
    Py_RETURN_NONE;
#else
    (void)raw;
    PyErr_Format(PyExc_NotImplementedError, "CPython %s has no _Py_DebugOffsets", OXP_LAYOUT_NAME);
    return NULL;
#endif
}

/* -- the thread list ------------------------------------------------------- */

/* Decodes thread i's raw copy. */
static void decode_thread(oxp_nogil_t *st, int i)
{
    oxp_threadwalk_t *tw = &st->threads[i];
    oxp_layout_thread(st->tstates + (size_t)i * OXP_TSTATE_SIZE, tw->addr, &tw->t);
    tw->t.native_id = oxp_native_alias(tw->t.native_id);
}

/* Copies the list head and the thread states at last tick's addresses in
 * one batched read, and keeps them if the list has not changed since.
 * Returns how many, or -1. */
static int copy_thread_list_batched(oxp_sampler_t *s, oxp_nogil_t *st, uintptr_t head_addr)
{
    int n = st->prev_nthreads;
    if (n <= 0 || n > OXP_NOGIL_MAX_THREADS || (size_t)n + 1 > st->raw_cap) {
        return -1;
    }
    uintptr_t head = 0;
    st->local[0].iov_base = &head;
    st->local[0].iov_len = sizeof(head);
    st->remote[0].iov_base = (void *)head_addr;
    st->remote[0].iov_len = sizeof(head);
    for (int i = 0; i < n; i++) {
        st->local[i + 1].iov_base = st->tstates + (size_t)i * OXP_TSTATE_SIZE;
        st->local[i + 1].iov_len = OXP_TSTATE_SIZE;
        st->remote[i + 1].iov_base = (void *)st->threads[i].addr;
        st->remote[i + 1].iov_len = OXP_TSTATE_SIZE;
    }
    if (oxp_safereadv(st->local, st->remote, (size_t)n + 1) != (size_t)n + 1 || head != st->threads[0].addr) {
        return -1;
    }
    /* The links must still say what they said: same order, same end. */
    for (int i = 0; i < n; i++) {
        decode_thread(st, i);
        uintptr_t next = i + 1 < n ? st->threads[i + 1].addr : 0;
        if (st->threads[i].t.interp != (uintptr_t)s->interp || st->threads[i].t.next != next) {
            return -1;
        }
    }
    return n;
}

/* Copies the thread states of the interpreter into st->threads (lock-free;
 * tolerant of a list that changes under us).  0 / -1. */
static int copy_thread_list(oxp_sampler_t *s, oxp_nogil_t *st)
{
    uintptr_t head_addr = oxp_layout_threads_head((uintptr_t)s->interp);
    int n = copy_thread_list_batched(s, st, head_addr);
    if (n <= 0) {
        uintptr_t addr;
        if (oxp_saferead(&addr, head_addr, sizeof(addr)) < 0) {
            return -1;
        }
        n = 0;
        while (addr != 0) {
            if (n >= OXP_NOGIL_MAX_THREADS) {
                return -1;
            }
            for (int k = 0; k < n; k++) {
                if (st->threads[k].addr == addr) {
                    return -1; /* cycle */
                }
            }
            st->threads[n].addr = addr;
            if (oxp_saferead(st->tstates + (size_t)n * OXP_TSTATE_SIZE, addr, OXP_TSTATE_SIZE) < 0) {
                break; /* the rest of the list went away under us */
            }
            decode_thread(st, n);
            if (st->threads[n].t.interp != (uintptr_t)s->interp) {
                break;
            }
            addr = st->threads[n++].t.next;
        }
    }
    st->nthreads = st->prev_nthreads = n;
    return 0;
}

/* -- recording (db->lock held) ---------------------------------------------- */

/* Records one resolved stack of thread tw with its label. */
static void record_sample(oxp_sampler_t *s, const oxp_threadwalk_t *tw, const oxp_frame_t *frames,
                          uint32_t depth, int held_gil)
{
    char label[OXP_LABEL_MAX + 1];
    size_t label_len = oxp_labels_of(tw->t.ident, tw->context, label);
    oxp_sample_info_t info = {held_gil, tw->idle, tw->cpu_ns};
    oxp_sampler_record_unlocked(s, s->db, tw->t.ident, tw->t.native_id, label, label_len, frames, depth, &info);
}

/* Resolves thread tw's raw frames and records them, without the frames of
 * ox_profile's own code; a thread running ox_profile's code (its leaf-most
 * frame is ours) is not recorded at all.  0 (recorded, or nothing to
 * record), or -1 and why. */
static int record_frames(oxp_sampler_t *s, oxp_nogil_t *st, const oxp_threadwalk_t *tw, uint32_t mask,
                         int held_gil, uint64_t tick, oxp_drop_t *why, uint32_t *depth_out)
{
    oxp_db_t *db = s->db;
    *depth_out = 0;
    oxp_frame_t *frames = oxp_scratch_frames(&s->scratch, (size_t)tw->n + 1);
    if (frames == NULL) {
        *why = OXP_DROP_NO_MEMORY;
        return -1;
    }
    uint32_t depth = 0;
    int over = 0, visible = 0, own_leaf = 0;
    for (uint32_t i = 0; i < tw->n; i++) {
        const oxp_rawframe_t *r = &st->raw[tw->first + i];
        oxp_id_t func;
        int32_t line;
        int own;
        if (r->live >= 0) {
            oxp_live_t *e = &st->live[r->live];
            if (e->generation != db->generation) {
                *why = OXP_DROP_INVALID; /* the database was cleared: resolve afresh */
                return -1;
            }
            e->tick = tick;
            func = e->func;
            line = e->line;
            own = e->own;
        } else {
            const oxp_pycode_t *c = oxp_nogil_code(st, mask, r->code);
            int64_t lasti = c != NULL ? oxp_frame_lasti(r->instr, c) : INT64_MIN;
            if (lasti == INT64_MIN) {
                *why = OXP_DROP_INVALID;
                return -1;
            }
            /* A frame that has not reached its first traceable instruction is
             * not yet visible to Python's own tools either: skip it. */
            if (oxp_frame_incomplete(r->kind, c, lasti)) {
                oxp_nogil_live_store(st, r, OXP_NO_ID, 0, 0, db->generation, tick);
                continue;
            }
            oxp_code_entry_t *e;
            int rc = oxp_nogil_resolve(s, db, r->code, c, r->func, r->globals, &e);
            if (rc == -1) {
                *why = OXP_DROP_READ;
                return -1;
            }
            if (rc == -2) {
                over = 1;
                continue;
            }
            func = e->func;
            line = oxp_codecache_line(&s->cache, e, (int32_t)lasti);
            own = e->own;
            oxp_nogil_live_store(st, r, func, line, own, db->generation, tick);
        }
        if (func == OXP_NO_ID) {
            continue;
        }
        own_leaf |= own && !visible;
        visible = 1;
        if (!own) {
            frames[depth].func = func;
            frames[depth].line = line;
            depth++;
        }
    }
    if (own_leaf) {
        s->stats.own_skipped++;
        return 0;
    }
    if (depth == 0) {
        return 0; /* only frames that have not started: nothing to record */
    }
    if (over) {
        oxp_sample_info_t info = {held_gil, tw->idle, tw->cpu_ns};
        oxp_db_add_overflow(db, &info);
        s->stats.samples++;
        return 0;
    }
    record_sample(s, tw, frames, depth, held_gil);
    *depth_out = depth;
    return 0;
}

/* -- the tick --------------------------------------------------------------- */

/* Walks thread tw into st->raw from `first`; while a walk fails (a frame
 * changed under it), again from a fresh copy of its thread state. */
static void walk_thread(oxp_sampler_t *s, oxp_nogil_t *st, oxp_threadwalk_t *tw, size_t first)
{
    tw->attempts = 1;
    oxp_nogil_walk(st, tw, first, (uintptr_t)s->interp, 0);
    while (tw->status == OXP_WALK_FAILED && tw->attempts < OXP_NOGIL_ATTEMPTS) {
        tw->attempts++;
        oxp_nogil_walk(st, tw, first, (uintptr_t)s->interp, 1);
    }
}

/* Whether thread tw's native id was already recorded this tick.  A new
 * thread's state carries its creator's ids until the thread runs, and sits
 * before it in the list: it has no frames, and must not hide the creator's
 * real state. */
static int already_recorded(const oxp_nogil_t *st, int nrecorded, uint64_t native_id)
{
    for (int k = 0; k < nrecorded; k++) {
        if (st->recorded[k] == native_id) {
            return 1;
        }
    }
    return 0;
}

void oxp_capture_nogil_tick(oxp_sampler_t *s, uint64_t tick)
{
    oxp_db_t *db = s->db;
    if (oxp_layout_finalizing()) {
        return;
    }
    oxp_saferead_tick();
    oxp_nogil_t *st = state_get(s);
    if (st == NULL) {
        pthread_mutex_lock(&db->lock);
        s->stats.dropped[OXP_DROP_NO_MEMORY]++;
        pthread_mutex_unlock(&db->lock);
        return;
    }
    if (copy_thread_list(s, st) < 0) {
        pthread_mutex_lock(&db->lock);
        s->stats.dropped[OXP_DROP_THREADS]++;
        pthread_mutex_unlock(&db->lock);
        return;
    }
    uintptr_t holder = oxp_layout_gil_holder((uintptr_t)s->interp);

    /* Which threads to walk. */
    for (int i = 0; i < st->nthreads; i++) {
        oxp_threadwalk_t *tw = &st->threads[i];
        tw->n = 0;
        tw->truncated = 0;
        tw->attempts = 0;
        tw->cpu_ns = 0;
        tw->idle = 0;
        tw->memo = -1;
        tw->why = OXP_DROP_INVALID;
        tw->status = tw->t.ident == 0 ? OXP_WALK_NONE : OXP_WALK_FRAMES;
        if (tw->status == OXP_WALK_FRAMES && !oxp_sampler_thread_here(s, tw->t.native_id, tick)) {
            tw->status = OXP_WALK_GONE;
            continue;
        }
        if (tw->status == OXP_WALK_FRAMES && s->mode == OXP_MODE_CPU) {
            tw->cpu_ns = oxp_sampler_cpu_delta(s, tw->t.native_id, tick);
            if (tw->cpu_ns == 0) {
                tw->status = OXP_WALK_IDLE;
            }
        }
    }

    /* Pass 1, no lock: walk every thread into one array of raw frames. */
    size_t total = 0;
    for (int i = 0; i < st->nthreads; i++) {
        oxp_threadwalk_t *tw = &st->threads[i];
        if (tw->status != OXP_WALK_FRAMES) {
            continue;
        }
        if (oxp_nogil_reserve(st, total + OXP_NOGIL_MAX_WALK) < 0) {
            tw->status = OXP_WALK_FAILED;
            tw->why = OXP_DROP_NO_MEMORY;
            continue;
        }
        walk_thread(s, st, tw, total);
        if (tw->status != OXP_WALK_FRAMES) {
            continue;
        }
        tw->first = total;
        tw->hash = oxp_nogil_hash(st->raw + total, tw->n);
        int changed = 0;
        tw->memo = tw->truncated ? -1 : oxp_nogil_memo_find(st, tw->t.native_id, tw->hash, &changed);
        if (s->mode == OXP_MODE_WALL) {
            /* It ran if it holds the GIL or its frames moved; else its clock says. */
            int ran = oxp_sampler_ran(s, tw->t.native_id, tick, tw->addr == holder || changed);
            if (ran < 0) {
                tw->status = OXP_WALK_GONE;
                continue;
            }
            tw->idle = !ran;
        }
        if (tw->memo >= 0) {
            tw->status = OXP_WALK_MEMO; /* unchanged: its frames need no header reads */
            continue;
        }
        oxp_nogil_live_mark(st, st->raw + total, tw->n, tick);
        total += tw->n;
    }

    /* Pass 2: one batched read of every distinct code object's header. */
    uint32_t mask = total > 0 ? oxp_nogil_read_headers(st, total) : 0;

    /* Pass 3, under the database lock: resolve and record. */
    int nrecorded = 0, nretry = 0;
    pthread_mutex_lock(&db->lock);
    for (int i = 0; i < st->nthreads; i++) {
        oxp_threadwalk_t *tw = &st->threads[i];
        s->stats.retried += tw->attempts > 1;
        if (tw->status == OXP_WALK_NONE) {
            continue;
        }
        if (tw->status == OXP_WALK_IDLE) {
            s->stats.idle_skipped++;
            continue;
        }
        if (tw->status == OXP_WALK_GONE) {
            s->stats.gone_skipped++;
            continue;
        }
        if (tw->status == OXP_WALK_FAILED) {
            s->stats.dropped[tw->why]++;
            continue;
        }
        if (already_recorded(st, nrecorded, tw->t.native_id)) {
            continue;
        }
        int held = holder == tw->addr;
        if (tw->status == OXP_WALK_MEMO) {
            oxp_memo_t *m = &st->memo[tw->memo];
            if (m->db_generation == db->generation) {
                record_sample(s, tw, m->frames, m->depth, held);
                m->last_tick = tick;
                s->stats.memo_hits++;
                st->recorded[nrecorded++] = tw->t.native_id;
            } else {
                m->hash = 0; /* the database was cleared: resolve afresh below */
                st->retry[nretry++] = i;
            }
            continue;
        }
        oxp_drop_t why;
        uint32_t depth;
        if (record_frames(s, st, tw, mask, held, tick, &why, &depth) < 0) {
            st->retry[nretry++] = i; /* it moved while we read it: once more, alone, below */
            continue;
        }
        if (depth > 0) {
            st->recorded[nrecorded++] = tw->t.native_id;
            if (!tw->truncated) {
                oxp_nogil_memo_store(st, tw->t.native_id, tw->hash, s->scratch.frames, depth, db->generation, tick);
            }
        }
    }
    pthread_mutex_unlock(&db->lock);

    /* Threads whose frames could not be resolved: a fresh walk each. */
    for (int k = 0; k < nretry; k++) {
        oxp_threadwalk_t *tw = &st->threads[st->retry[k]];
        tw->attempts = 0;
        walk_thread(s, st, tw, 0);
        tw->first = 0;
        uint32_t m = tw->status == OXP_WALK_FRAMES ? oxp_nogil_read_headers(st, tw->n) : 0;
        pthread_mutex_lock(&db->lock);
        s->stats.retried++;
        oxp_drop_t why = tw->why;
        uint32_t depth;
        if (tw->status == OXP_WALK_FAILED ||
            (tw->status == OXP_WALK_FRAMES &&
             record_frames(s, st, tw, m, holder == tw->addr, tick, &why, &depth) < 0)) {
            s->stats.dropped[why]++;
        }
        pthread_mutex_unlock(&db->lock);
    }
}

#else /* !OXP_HAVE_NOGIL */

#ifndef OXP_NOGIL_UNAVAILABLE /* setup.py says why */
#define OXP_NOGIL_UNAVAILABLE "this build has no GIL-free capture"
#endif

int oxp_capture_nogil_available(const char **why)
{
    *why = OXP_NOGIL_UNAVAILABLE;
    return 0;
}

const char *oxp_capture_nogil_layout(void)
{
    return NULL;
}

PyObject *oxp_capture_nogil_debug_offsets(PyObject *raw)
{
    (void)raw;
    PyErr_SetString(PyExc_NotImplementedError, "this build has no GIL-free capture");
    return NULL;
}

void oxp_capture_nogil_tick(oxp_sampler_t *s, uint64_t tick)
{
    (void)tick;
    pthread_mutex_lock(&s->db->lock);
    s->stats.dropped[OXP_DROP_INVALID]++;
    pthread_mutex_unlock(&s->db->lock);
}

void oxp_capture_nogil_free(oxp_sampler_t *s) { (void)s; }

#endif
