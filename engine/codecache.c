/* Code-object cache: see codecache.h. */
#include "codecache.h"

#include <stdlib.h>
#include <string.h>

#include "linetable.h"

/* The package directory, with its trailing separator.  Written once at
 * import with the GIL held, before any sampler exists; read-only after. */
static char own_prefix[4096];
static size_t own_prefix_len;

int oxp_codecache_set_own_prefix(const char *prefix, size_t len)
{
    if (len == 0 || len >= sizeof(own_prefix)) {
        return -1;
    }
    memcpy(own_prefix, prefix, len);
    own_prefix_len = len;
    return 0;
}

int oxp_code_is_own(const char *filename, size_t len)
{
    return own_prefix_len > 0 && len > own_prefix_len && memcmp(filename, own_prefix, own_prefix_len) == 0;
}

static uint32_t addr_hash(uintptr_t a)
{
    uint64_t x = (uint64_t)a;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

int oxp_codecache_init(oxp_codecache_t *c)
{
    memset(c, 0, sizeof(*c));
    c->entries = calloc(OXP_CODECACHE_SLOTS, sizeof(oxp_code_entry_t));
    c->lines = calloc(OXP_LINECACHE_SLOTS, sizeof(oxp_line_entry_t));
    if (c->entries == NULL || c->lines == NULL) {
        free(c->entries);
        free(c->lines);
        memset(c, 0, sizeof(*c));
        return -1;
    }
    c->mask = OXP_CODECACHE_SLOTS - 1;
    c->lines_mask = OXP_LINECACHE_SLOTS - 1;
    c->next_stamp = 1;
    return 0;
}

void oxp_codecache_clear(oxp_codecache_t *c)
{
    if (c->entries == NULL) {
        return;
    }
    for (uint32_t i = 0; i <= c->mask; i++) {
        free(c->entries[i].linetable);
    }
    memset(c->entries, 0, ((size_t)c->mask + 1) * sizeof(oxp_code_entry_t));
    memset(c->lines, 0, ((size_t)c->lines_mask + 1) * sizeof(oxp_line_entry_t));
    c->used = 0;
}

void oxp_codecache_free(oxp_codecache_t *c)
{
    oxp_codecache_clear(c);
    free(c->entries);
    free(c->lines);
    memset(c, 0, sizeof(*c));
}

oxp_code_entry_t *oxp_codecache_get(oxp_codecache_t *c, uintptr_t code)
{
    for (uint32_t i = addr_hash(code) & c->mask;; i = (i + 1) & c->mask) {
        oxp_code_entry_t *e = &c->entries[i];
        if (e->code == code) {
            return e;
        }
        if (e->code == 0) {
            return NULL;
        }
    }
}

oxp_code_entry_t *oxp_codecache_slot(oxp_codecache_t *c, uintptr_t code)
{
    oxp_code_entry_t *e = oxp_codecache_get(c, code);
    if (e == NULL) {
        if ((c->used + 1) * 4 > (c->mask + 1) * 3) {
            oxp_codecache_clear(c); /* crude but bounded: refill from live code */
        }
        uint32_t i = addr_hash(code) & c->mask;
        while (c->entries[i].code != 0) {
            i = (i + 1) & c->mask;
        }
        e = &c->entries[i];
        c->used++;
    }
    free(e->linetable);
    memset(e, 0, sizeof(*e));
    e->code = code;
    e->func = OXP_NO_ID;
    e->stamp = c->next_stamp++;
    if (c->next_stamp == 0) {
        c->next_stamp = 1;
    }
    return e;
}

int32_t oxp_codecache_line(oxp_codecache_t *c, const oxp_code_entry_t *e, int32_t lasti)
{
    if (lasti < 0 || e->linetable == NULL) {
        return e->g_firstlineno;
    }
    uint32_t h = (addr_hash(e->code) ^ ((uint32_t)lasti * 0x9e3779b1u)) & c->lines_mask;
    oxp_line_entry_t *le = &c->lines[h];
    if (le->code == e->code && le->stamp == e->stamp && le->lasti == lasti) {
        return le->line;
    }
    int32_t line = oxp_linetable_line(e->linetable, e->linetable_len, e->g_firstlineno, lasti);
    le->code = e->code;
    le->stamp = e->stamp;
    le->lasti = lasti;
    le->line = line;
    return line;
}
