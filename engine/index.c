/* Open-addressing hash index (linear probing) shared by the database tables. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

uint32_t oxp_index_find(const oxp_index_t *ix, uint32_t hash, oxp_index_eq_fn eq, const void *ctx)
{
    if (ix->mask == 0) {
        return UINT32_MAX;
    }
    for (uint32_t i = hash & ix->mask;; i = (i + 1) & ix->mask) {
        uint64_t slot = ix->slots[i];
        if (slot == 0) {
            return UINT32_MAX;
        }
        if ((uint32_t)(slot >> 32) == hash) {
            uint32_t id = (uint32_t)(slot & 0xffffffffu) - 1;
            if (eq(ctx, id)) {
                return id;
            }
        }
    }
}

void oxp_index_put(oxp_index_t *ix, uint32_t hash, uint32_t id)
{
    uint32_t i = hash & ix->mask;
    while (ix->slots[i] != 0) {
        i = (i + 1) & ix->mask;
    }
    ix->slots[i] = ((uint64_t)hash << 32) | (uint64_t)(id + 1);
    ix->used++;
}

int oxp_index_resize(oxp_index_t *ix, uint32_t capacity)
{
    uint64_t *slots = calloc(capacity, sizeof(uint64_t));
    if (slots == NULL) {
        return -1;
    }
    uint32_t mask = capacity - 1;
    for (uint32_t j = 0; ix->mask && j <= ix->mask; j++) {
        uint64_t slot = ix->slots[j];
        if (slot != 0) {
            uint32_t i = (uint32_t)(slot >> 32) & mask;
            while (slots[i] != 0) {
                i = (i + 1) & mask;
            }
            slots[i] = slot;
        }
    }
    free(ix->slots);
    ix->slots = slots;
    ix->mask = mask;
    return 0;
}

int oxp_index_grow(oxp_index_t *ix, uint32_t initial)
{
    if (!oxp_index_needs_grow(ix)) {
        return 0;
    }
    uint32_t capacity = ix->mask ? (ix->mask + 1) * 2 : initial;
    return capacity == 0 ? -1 : oxp_index_resize(ix, capacity); /* 0: the doubling wrapped */
}

void oxp_index_free(oxp_index_t *ix)
{
    free(ix->slots);
    memset(ix, 0, sizeof(*ix));
}

uint32_t oxp_hash_bytes(const void *data, size_t len, uint32_t seed)
{
    const unsigned char *p = data;
    uint32_t h = seed ^ (uint32_t)len;
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        h = oxp_hash_mix(h, w);
        p += 4;
        len -= 4;
    }
    uint32_t tail = 0;
    for (size_t i = 0; i < len; i++) {
        tail |= (uint32_t)p[i] << (8 * i);
    }
    h = oxp_hash_mix(h, tail);
    return oxp_hash_final(h);
}
