/* A cache from code-object address to the database function id (and, for the
 * GIL-free capture, a private copy of the line table).  An entry is trusted
 * only while the header fields it was built from still read the same, which
 * guards against a freed code object's address being reused (ABA). */
#ifndef OXP_CODECACHE_H
#define OXP_CODECACHE_H

#include <stdint.h>

#include "db.h"

typedef struct {
    uintptr_t code; /* key; 0 = empty slot */
    /* The guard: fields of the code object read when the entry was made. */
    uintptr_t g_name, g_qualname, g_filename, g_linetable;
    int64_t g_size;
    int32_t g_firstlineno;
    oxp_id_t func;        /* database function id ... */
    uint64_t db_generation; /* ... valid for this database generation */
    uint8_t *linetable;   /* Owned copy, or NULL */
    uint32_t linetable_len;
    uint32_t stamp;       /* unique per fill, keys the line cache */
    uint8_t own;          /* ox_profile's own code: its frames are left out of samples */
} oxp_code_entry_t;

typedef struct {
    uintptr_t code;
    uint32_t stamp;
    int32_t lasti;
    int32_t line;
} oxp_line_entry_t;

typedef struct {
    oxp_code_entry_t *entries;
    uint32_t mask;
    uint32_t used;
    uint32_t next_stamp;
    oxp_line_entry_t *lines; /* direct-mapped (code, lasti) -> line */
    uint32_t lines_mask;
} oxp_codecache_t;

#define OXP_CODECACHE_SLOTS 8192u
#define OXP_LINECACHE_SLOTS 16384u

/* Whether a code object's file is one of ox_profile's own (under the
 * package directory set once, GIL held, at import by
 * oxp_codecache_set_own_prefix, before any sampler starts). */
int oxp_codecache_set_own_prefix(const char *prefix, size_t len);
int oxp_code_is_own(const char *filename, size_t len);

int oxp_codecache_init(oxp_codecache_t *c);
void oxp_codecache_free(oxp_codecache_t *c);
void oxp_codecache_clear(oxp_codecache_t *c);
/* The entry for `code`, or NULL. */
oxp_code_entry_t *oxp_codecache_get(oxp_codecache_t *c, uintptr_t code);
/* A slot to fill for `code` (an old entry is released); clears the cache when
 * it is too full.  Never NULL once initialised. */
oxp_code_entry_t *oxp_codecache_slot(oxp_codecache_t *c, uintptr_t code);
/* The cached line for (entry, lasti), computing it from the entry's line
 * table on a miss. */
int32_t oxp_codecache_line(oxp_codecache_t *c, const oxp_code_entry_t *e, int32_t lasti);

#endif
