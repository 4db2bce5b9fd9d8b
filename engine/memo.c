/* What the GIL-free capture remembers from one tick to the next so that
 * unchanged frames and stacks need no code-object reads: the live-frame
 * table and the per-thread memo (nogil.h says why each is safe). */
#include <stdlib.h>
#include <string.h>

#include "nogil.h"

static uint32_t live_hash(const oxp_rawframe_t *r)
{
    uint64_t h = (uint64_t)r->frame * 0x9e3779b97f4a7c15ULL;
    h ^= (uint64_t)r->code * 0xff51afd7ed558ccdULL;
    h ^= (uint64_t)r->instr * 0xc4ceb9fe1a85ec53ULL;
    return (uint32_t)(h ^ (h >> 29));
}

static int same_frame(const oxp_live_t *e, const oxp_rawframe_t *r)
{
    return e->frame == r->frame && e->code == r->code && e->instr == r->instr;
}

void oxp_nogil_live_mark(oxp_nogil_t *st, oxp_rawframe_t *raw, uint32_t n, uint64_t tick)
{
    for (uint32_t i = 0; i < n; i++) {
        oxp_rawframe_t *r = &raw[i];
        uint32_t h = live_hash(r);
        r->live = -1;
        for (uint32_t k = 0; k < OXP_LIVE_PROBES; k++) {
            uint32_t slot = (h + k) & (OXP_LIVE_SLOTS - 1);
            const oxp_live_t *e = &st->live[slot];
            if (same_frame(e, r)) {
                if (e->tick + 1 >= tick) {
                    r->live = (int32_t)slot;
                }
                break;
            }
        }
    }
}

void oxp_nogil_live_store(oxp_nogil_t *st, const oxp_rawframe_t *r, oxp_id_t func, int32_t line, int own,
                          uint64_t generation, uint64_t tick)
{
    uint32_t h = live_hash(r);
    oxp_live_t *victim = NULL;
    for (uint32_t k = 0; k < OXP_LIVE_PROBES; k++) {
        oxp_live_t *e = &st->live[(h + k) & (OXP_LIVE_SLOTS - 1)];
        if (same_frame(e, r) || e->frame == 0) {
            victim = e;
            break;
        }
        if (victim == NULL && e->tick + 1 < tick) {
            victim = e; /* stale: reuse */
        }
    }
    if (victim == NULL) {
        return;
    }
    victim->frame = r->frame;
    victim->code = r->code;
    victim->instr = r->instr;
    victim->generation = generation;
    victim->tick = tick;
    victim->func = func;
    victim->line = line;
    victim->own = (uint8_t)own;
}

uint64_t oxp_nogil_hash(const oxp_rawframe_t *raw, uint32_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t words[4] = {raw[i].frame, raw[i].code, raw[i].instr, (uint64_t)raw[i].kind};
        for (int k = 0; k < 4; k++) {
            h ^= words[k];
            h *= 0xff51afd7ed558ccdULL;
            h ^= h >> 32;
        }
    }
    return h;
}

/* The memo slot of a thread (creating one, evicting a stale one, if
 * `create`), or -1. */
static int memo_slot(oxp_nogil_t *st, uint64_t native_id, uint64_t tick, int create)
{
    uint32_t start = (uint32_t)(native_id * 0x9e3779b1u) % OXP_MEMO_SLOTS;
    int empty = -1, stale = -1;
    for (uint32_t k = 0; k < OXP_MEMO_SLOTS; k++) {
        int i = (int)((start + k) % OXP_MEMO_SLOTS);
        oxp_memo_t *m = &st->memo[i];
        if (m->native_id == native_id) {
            return i;
        }
        if (m->native_id == 0) {
            /* Slots are never emptied, only reused: the id is not further on. */
            empty = i;
            break;
        }
        if (tick > m->last_tick + 1000 && stale < 0) {
            stale = i;
        }
    }
    if (!create) {
        return -1;
    }
    int i = empty >= 0 ? empty : stale;
    if (i >= 0) {
        st->memo[i].native_id = native_id;
        st->memo[i].hash = 0;
        st->memo[i].depth = 0;
        st->memo[i].db_generation = UINT64_MAX;
    }
    return i;
}

int oxp_nogil_memo_find(oxp_nogil_t *st, uint64_t native_id, uint64_t hash, int *changed)
{
    int i = memo_slot(st, native_id, 0, 0);
    *changed = i >= 0 && st->memo[i].hash != 0 && st->memo[i].hash != hash;
    return i >= 0 && st->memo[i].hash == hash && st->memo[i].depth > 0 ? i : -1;
}

void oxp_nogil_memo_store(oxp_nogil_t *st, uint64_t native_id, uint64_t hash, const oxp_frame_t *frames,
                          uint32_t depth, uint64_t generation, uint64_t tick)
{
    int i = memo_slot(st, native_id, tick, 1);
    if (i < 0) {
        return;
    }
    oxp_memo_t *m = &st->memo[i];
    if (m->cap < depth) {
        oxp_frame_t *f = realloc(m->frames, depth * sizeof(oxp_frame_t));
        if (f == NULL) {
            m->hash = 0;
            return;
        }
        m->frames = f;
        m->cap = depth;
    }
    memcpy(m->frames, frames, depth * sizeof(oxp_frame_t));
    m->depth = depth;
    m->hash = hash;
    m->db_generation = generation;
    m->last_tick = tick;
}
