/* Walking a thread's frame chain without the GIL: the current frame is
 * read through the thread state at the moment of the walk, copies of its
 * data-stack chunks serve the frames that live in them, everything else
 * (generator and coroutine frames, entry frames on the C stack) is read on
 * its own; every read is a crash-proof one (saferead.c).  Also the batched
 * read of every code object's header after the walks. */
#include "layout/layout.h"

#include <stdlib.h>
#include <string.h>

#include "nogil.h"
#include "saferead.h"

/* p resized to n bytes; on failure p itself, and *failed is set. */
static void *grow(void *p, size_t n, int *failed)
{
    void *q = *failed ? NULL : realloc(p, n);
    if (q == NULL) {
        *failed = 1;
        return p;
    }
    return q;
}

int oxp_nogil_reserve(oxp_nogil_t *st, size_t need)
{
    if (need <= st->raw_cap) {
        return 0;
    }
    size_t cap = st->raw_cap ? st->raw_cap : OXP_NOGIL_MAX_WALK;
    while (cap < need) {
        cap *= 2;
    }
    /* Arrays that grew before a failure stay valid; raw_cap keeps the size
     * all of them have. */
    int failed = 0;
    st->raw = grow(st->raw, cap * sizeof(oxp_rawframe_t), &failed);
    st->slots = grow(st->slots, 2 * cap * sizeof(oxp_codeslot_t), &failed);
    st->headers = grow(st->headers, cap * OXP_CODE_HEADER_SIZE, &failed);
    st->codes = grow(st->codes, cap * sizeof(oxp_pycode_t), &failed);
    st->code_ok = grow(st->code_ok, cap, &failed);
    st->local = grow(st->local, cap * sizeof(struct iovec), &failed);
    st->remote = grow(st->remote, cap * sizeof(struct iovec), &failed);
    st->seg_ok = grow(st->seg_ok, cap, &failed);
    if (failed) {
        return -1;
    }
    st->raw_cap = cap;
    return 0;
}

/* Room for `used` bytes in a chunk copy.  0 / -1 (out of memory). */
static int chunk_reserve(oxp_chunkcopy_t *ch, size_t used)
{
    if (ch->cap < used) {
        char *copy = realloc(ch->copy, used);
        if (copy == NULL) {
            return -1;
        }
        ch->copy = copy;
        ch->cap = used;
    }
    return 0;
}

/* Adds segment (dst, src, n) to the batch. */
static void add_segment(oxp_nogil_t *st, size_t *nseg, void *dst, uintptr_t src, size_t n)
{
    st->local[*nseg].iov_base = dst;
    st->local[*nseg].iov_len = n;
    st->remote[*nseg].iov_base = (void *)src;
    st->remote[*nseg].iov_len = n;
    (*nseg)++;
}

/* Reads the batch's segments, resuming after one that fails; seg_ok[k]
 * says whether segment k was read. */
static void read_segments(oxp_nogil_t *st, size_t nseg)
{
    memset(st->seg_ok, 0, nseg);
    size_t pos = 0;
    while (pos < nseg) {
        size_t got = oxp_safereadv(st->local + pos, st->remote + pos, nseg - pos);
        memset(st->seg_ok + pos, 1, got);
        pos += got + 1; /* skip the one that failed */
    }
}

/* The used part of a thread's current chunk, or 0 when it cannot be copied. */
static size_t chunk_used(const oxp_pythread_t *t)
{
    size_t used = t->chunk_top > t->chunk ? (size_t)(t->chunk_top - t->chunk) : 0;
    return t->chunk != 0 && used <= OXP_NOGIL_MAX_CHUNK_BYTES ? used : 0;
}

/* -- one thread's walk ---------------------------------------------------- */

/* Frames of the walk in progress come from these. */
typedef struct {
    oxp_nogil_t *st;
    int nchunks;            /* chunks[0, nchunks) hold copies */
    uintptr_t next_chunk;   /* the chunk older than the last copied one, 0 if none, 1 if unknown */
    oxp_pychunk_t next_hdr; /* its header, once read */
    int next_hdr_read;
} frame_source_t;

/* Where frame addr's bytes are: in a chunk copy, or read into buf.  NULL
 * when unreadable. */
static const void *get_frame(frame_source_t *src, uintptr_t addr, void *buf)
{
    oxp_nogil_t *st = src->st;
    for (;;) {
        for (int i = 0; i < src->nchunks; i++) {
            const oxp_chunkcopy_t *ch = &st->chunks[i];
            if (ch->len >= OXP_FRAME_SIZE && addr >= ch->addr && addr - ch->addr <= ch->len - OXP_FRAME_SIZE) {
                return ch->copy + (addr - ch->addr);
            }
        }
        /* An older chunk, if the frame lies in it: copy it (its frames
         * come next).  A frame outside every chunk is a generator's or an
         * entry frame: read it on its own. */
        if (src->nchunks == 0 || src->nchunks >= OXP_NOGIL_MAX_CHUNKS) {
            break;
        }
        if (src->next_chunk == 1) {
            const oxp_chunkcopy_t *last = &st->chunks[src->nchunks - 1];
            oxp_pychunk_t hdr;
            src->next_chunk = 0;
            if (last->len >= OXP_CHUNK_HEADER_SIZE && oxp_layout_chunk(last->copy, &hdr) == 0) {
                src->next_chunk = hdr.previous;
            }
            src->next_hdr_read = 0;
        }
        if (src->next_chunk == 0) {
            break;
        }
        if (!src->next_hdr_read) {
            char raw[OXP_CHUNK_HEADER_SIZE];
            if (oxp_saferead(raw, src->next_chunk, sizeof(raw)) < 0 || oxp_layout_chunk(raw, &src->next_hdr) < 0 ||
                src->next_hdr.used > OXP_NOGIL_MAX_CHUNK_BYTES) {
                src->next_chunk = 0;
                break;
            }
            src->next_hdr_read = 1;
        }
        if (addr < src->next_chunk || addr - src->next_chunk >= src->next_hdr.used) {
            break;
        }
        oxp_chunkcopy_t *ch = &st->chunks[src->nchunks];
        if (chunk_reserve(ch, src->next_hdr.used) < 0 ||
            oxp_saferead(ch->copy, src->next_chunk, src->next_hdr.used) < 0) {
            break;
        }
        ch->addr = src->next_chunk;
        ch->len = src->next_hdr.used;
        src->nchunks++;
        src->next_chunk = 1;
    }
    return oxp_saferead(buf, addr, OXP_FRAME_SIZE) == 0 ? buf : NULL;
}

/* Follows the chain from `leaf` (whose bytes are in leaf_raw when not NULL)
 * into st->raw from `first`. */
static void walk_chain(frame_source_t *src, oxp_threadwalk_t *tw, size_t first, uintptr_t leaf,
                       const void *leaf_raw)
{
    oxp_nogil_t *st = src->st;
    char buf[OXP_FRAME_SIZE];
    uintptr_t addr = leaf;
    uint32_t n = 0, steps = 0;
    tw->truncated = 0;
    tw->status = OXP_WALK_FRAMES;
    while (addr != 0) {
        if (steps++ >= OXP_NOGIL_MAX_WALK) {
            tw->truncated = 1;
            break;
        }
        const void *raw = addr == leaf && leaf_raw != NULL ? leaf_raw : get_frame(src, addr, buf);
        if (raw == NULL) {
            tw->status = OXP_WALK_FAILED;
            tw->why = OXP_DROP_READ;
            return;
        }
        oxp_pyframe_t f;
        oxp_layout_frame(raw, &f);
        if (f.kind == OXP_FRAME_BAD || f.previous == addr || (f.kind != OXP_FRAME_SHIM && f.code == 0)) {
            tw->status = OXP_WALK_FAILED;
            tw->why = OXP_DROP_INVALID;
            return;
        }
        if (f.kind == OXP_FRAME_GENERATOR && f.previous == 0) {
            /* A running generator's frame links to its caller; a suspended
             * one links nowhere.  It stopped running between the read of the
             * frame that led here and its own: its callers are lost. */
            tw->status = OXP_WALK_FAILED;
            tw->why = OXP_DROP_TORN;
            return;
        }
        if (f.kind != OXP_FRAME_SHIM) {
            oxp_rawframe_t *r = &st->raw[first + n++];
            r->frame = addr;
            r->code = f.code;
            r->instr = f.instr;
            r->func = f.func;
            r->globals = f.globals;
            r->kind = f.kind;
            r->live = -1;
        }
        addr = f.previous;
    }
    tw->n = n;
    if (n == 0) {
        tw->status = OXP_WALK_NONE;
    }
}

void oxp_nogil_walk(oxp_nogil_t *st, oxp_threadwalk_t *tw, size_t first, uintptr_t interp, int reread)
{
    char leaf_raw[OXP_FRAME_SIZE];
    tw->n = 0;
    tw->truncated = 0;
    if (reread) {
        char ts[OXP_TSTATE_SIZE];
        if (oxp_saferead(ts, tw->addr, sizeof(ts)) < 0) {
            tw->status = OXP_WALK_NONE; /* the thread is gone */
            return;
        }
        oxp_layout_thread(ts, tw->addr, &tw->t);
        if (tw->t.interp != interp || tw->t.ident == 0) {
            tw->status = OXP_WALK_NONE;
            return;
        }
    }
    /* The current frame, and at once its bytes: a generator's frame read
     * right after the pointer to it is still running (see walk_chain). */
    uintptr_t leaf = 0;
    int rc = oxp_saferead_chase(tw->t.frame_at, tw->t.frame_via, &leaf, leaf_raw, sizeof(leaf_raw));
    if (rc < 0 || leaf == 0) {
        tw->status = OXP_WALK_NONE; /* not running Python code (yet) */
        return;
    }
    /* Its current Context (an asyncio task's labels are keyed by it), at
     * once too: the next task step changes it. */
    if (oxp_saferead(&tw->context, tw->t.context_at, sizeof(tw->context)) < 0) {
        tw->context = 0;
    }
    /* Then the current chunk, where its callers' frames are. */
    frame_source_t src = {st, 0, 1, {0, 0, 0}, 0};
    size_t used = chunk_used(&tw->t);
    oxp_chunkcopy_t *ch = &st->chunks[0];
    if (used > 0 && chunk_reserve(ch, used) == 0 && oxp_saferead(ch->copy, tw->t.chunk, used) == 0) {
        ch->addr = tw->t.chunk;
        ch->len = used;
        src.nchunks = 1;
    }
    walk_chain(&src, tw, first, leaf, rc == 0 ? leaf_raw : NULL);
}

/* -- code object headers -------------------------------------------------- */

static uint32_t code_hash(uintptr_t code, uint32_t mask)
{
    return (uint32_t)((code >> 4) * 0x9e3779b1u) & mask;
}

uint32_t oxp_nogil_read_headers(oxp_nogil_t *st, size_t n)
{
    size_t need = 0; /* frames not resolved at the previous tick */
    for (size_t i = 0; i < n; i++) {
        need += st->raw[i].live < 0;
    }
    uint32_t nslots = 16;
    while (nslots < 2 * need) {
        nslots *= 2;
    }
    uint32_t mask = nslots - 1;
    memset(st->slots, 0, nslots * sizeof(oxp_codeslot_t));
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        if (st->raw[i].live >= 0) {
            continue; /* resolved at the previous tick: no header needed */
        }
        uintptr_t code = st->raw[i].code;
        uint32_t h = code_hash(code, mask);
        while (st->slots[h].code != 0 && st->slots[h].code != code) {
            h = (h + 1) & mask;
        }
        if (st->slots[h].code == 0) {
            st->slots[h].code = code;
            st->slots[h].hdr = (uint32_t)nh;
            add_segment(st, &nh, st->headers + nh * OXP_CODE_HEADER_SIZE, code, OXP_CODE_HEADER_SIZE);
        }
    }
    read_segments(st, nh);
    for (size_t k = 0; k < nh; k++) {
        uintptr_t code = (uintptr_t)st->remote[k].iov_base;
        st->code_ok[k] = st->seg_ok[k] && oxp_layout_code(st->headers + k * OXP_CODE_HEADER_SIZE, code,
                                                          &st->codes[k]) == 0;
    }
    return mask;
}

const oxp_pycode_t *oxp_nogil_code(const oxp_nogil_t *st, uint32_t mask, uintptr_t code)
{
    uint32_t h = code_hash(code, mask);
    while (st->slots[h].code != code) {
        h = (h + 1) & mask;
    }
    uint32_t k = st->slots[h].hdr;
    return st->code_ok[k] ? &st->codes[k] : NULL;
}
