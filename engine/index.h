/* Open-addressing hash index from a 32-bit hash to an id, and the hash
 * functions the tables use.  A slot holds (hash << 32) | (id + 1); 0 is empty,
 * so growing needs no callback into the table that owns the ids. */
#ifndef OXP_INDEX_H
#define OXP_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *slots;
    uint32_t mask; /* capacity - 1; capacity is a power of two, or 0 when empty */
    uint32_t used;
} oxp_index_t;

/* Compares the candidate id with what the caller is looking for. */
typedef int (*oxp_index_eq_fn)(const void *ctx, uint32_t id);

/* The id stored under `hash` for which eq() is true, or UINT32_MAX. */
uint32_t oxp_index_find(const oxp_index_t *ix, uint32_t hash, oxp_index_eq_fn eq, const void *ctx);
/* Stores id under hash; the caller has checked it is absent and that
 * oxp_index_needs_grow() is false. */
void oxp_index_put(oxp_index_t *ix, uint32_t hash, uint32_t id);
static inline int oxp_index_needs_grow(const oxp_index_t *ix)
{
    return ix->mask == 0 || (size_t)(ix->used + 1) * 2 > (size_t)ix->mask + 1;
}
static inline size_t oxp_index_bytes(const oxp_index_t *ix)
{
    return ix->mask ? ((size_t)ix->mask + 1) * sizeof(uint64_t) : 0;
}
/* Rehashes into a table of `capacity` slots (a power of two).  0 or -1. */
int oxp_index_resize(oxp_index_t *ix, uint32_t capacity);
/* Makes room for one more id: doubles the table when it is half full (the
 * first table has `initial` slots, a power of two).  0 or -1. */
int oxp_index_grow(oxp_index_t *ix, uint32_t initial);
void oxp_index_free(oxp_index_t *ix);

uint32_t oxp_hash_bytes(const void *data, size_t len, uint32_t seed);
static inline uint32_t oxp_hash_mix(uint32_t h, uint32_t x)
{
    h ^= x * 0xcc9e2d51u;
    h = (h << 13) | (h >> 19);
    return h * 5u + 0xe6546b64u;
}
static inline uint32_t oxp_hash_final(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

#endif
