/* The shared-profile format: what one process publishes for the other
 * processes of the same server (its profile database, its settings and
 * statistics, its request timings) as a compact, versioned, checksummed byte
 * string; reading it back with every bound checked; and merging several
 * processes' profiles into one database.  Plain C: no Python object, no
 * pickle, nothing executable.
 *
 * A file is a header and sections; every integer is little-endian.
 *
 *   header (OXP_SHARE_HEADER bytes)
 *     0  char[8]  magic "OXPSHARE"
 *     8  u32      format version (OXP_SHARE_VERSION)
 *     12 u32      header size
 *     16 u64      payload size (bytes after the header)
 *     24 u32      CRC-32 (IEEE) of the whole file, computed with this field 0
 *     28 u32      number of sections
 *     32 u64      reserved, 0
 *   section: u32 tag, u32 reserved (0), u64 body length, body, zero padding
 *            to a multiple of 8.  Each tag at most once; unknown tags are
 *            skipped (a later version may add some).
 *
 *   META  u32 n; n x {u16 key length, key, u8 type, value}: type 1 int64,
 *         2 double, 3 string (u32 length, bytes), 4 bool (u8)
 *   STRS  u32 n; n x {u32 length, UTF-8 bytes}
 *   FUNC  u32 n; n x {u32 name, u32 qualname, u32 module, u32 filename, i32 firstlineno} (string ids)
 *   STAK  u32 n, u32 frames; n x {u32 depth, depth x {u32 function, i32 line}} (leaf first)
 *   THRD  u32 n; n x {u64 ident, u64 native_id, u32 name (string id or 0xffffffff)}
 *   ROWS  u32 n; n x {u32 thread, u32 label (string id or 0xffffffff), u32 stack, u8 idle,
 *                     u64 hits, u64 gil_hits, u64 cpu_ns}
 *   TOTL  u64 total_hits, u64 overflow_hits, u64 overflow_gil_hits, u64 overflow_cpu_ns
 *   TIME  u32 n; n x {u32 length, endpoint, u64 count, f64 total, f64 max, u64 errors,
 *                     u32 buckets, buckets x {u32 index, u64 count}}
 */
#ifndef OXP_SHARE_H
#define OXP_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define OXP_SHARE_VERSION 1u
#define OXP_SHARE_HEADER 40u
/* Longest file name accepted in the shared directory. */
#define OXP_SHARE_NAME_MAX 200u
/* Bounds of what a file may hold, beyond its size. */
#define OXP_SHARE_META_MAX 4096u      /* META items */
#define OXP_SHARE_TIMING_BUCKETS 4096u /* buckets of one endpoint's histogram */

enum {
    OXP_META_INT = 1,
    OXP_META_DOUBLE = 2,
    OXP_META_STR = 3,
    OXP_META_BOOL = 4,
};

/* A growable byte buffer; `oom` is sticky and checked once at the end. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} oxp_buf_t;

void oxp_buf_free(oxp_buf_t *b);

/* META items, appended to a buffer that becomes the section's body after the
 * count (the caller counts the items it adds). */
void oxp_meta_put_int(oxp_buf_t *b, const char *key, size_t key_len, int64_t v);
void oxp_meta_put_double(oxp_buf_t *b, const char *key, size_t key_len, double v);
void oxp_meta_put_str(oxp_buf_t *b, const char *key, size_t key_len, const char *s, size_t len);
void oxp_meta_put_bool(oxp_buf_t *b, const char *key, size_t key_len, int v);

/* One endpoint of the TIME section, appended likewise (then the caller
 * appends `nbuckets` pairs with oxp_timing_put_bucket). */
void oxp_timing_put(oxp_buf_t *b, const char *name, size_t len, uint64_t count, double total, double max,
                    uint64_t errors, uint32_t nbuckets);
void oxp_timing_put_bucket(oxp_buf_t *b, uint32_t index, uint64_t count);

/* Encodes a whole file into `out`: META (nmeta items already encoded in
 * `meta`), the database's tables when db is not NULL (the caller holds
 * db->lock), TIME (ntimings entries in `timings`) when timings is not NULL.
 * 0, or -1 when out of memory. */
int oxp_share_encode(oxp_buf_t *out, const oxp_buf_t *meta, uint32_t nmeta, const oxp_db_t *db,
                     const oxp_buf_t *timings, uint32_t ntimings);

/* Whether `name` may be used in the shared directory: 1 to OXP_SHARE_NAME_MAX
 * bytes, no '/', no NUL, not starting with '.'. */
int oxp_share_name_ok(const char *name, size_t len);

/* Writes data as file `name` of directory dirfd, atomically: a private
 * temporary file (0600, created exclusively, never through a symlink), then
 * renamed over `name`.  0, or -1 with errno set. */
int oxp_share_store(int dirfd, const char *name, const uint8_t *data, size_t len);

/* Reads file `name` of dirfd into a new buffer (free with free()): only a
 * regular file owned by this user, opened without following a symlink, of at
 * most max_len bytes.  0, or -1 with *why set (a static string). */
int oxp_share_load(int dirfd, const char *name, size_t max_len, uint8_t **data, size_t *len, const char **why);

/* What a file holds, checked.  Tables point into arrays the parser allocated
 * (or, for oxp_share_view_of_db, into the database itself); strings and the
 * META and TIME bodies point into the file's bytes, which must outlive the view. */
typedef struct {
    const uint8_t *p;
    uint32_t len;
} oxp_sv_t;

typedef struct {
    const uint8_t *meta; /* META items (after the count), or NULL */
    size_t meta_len;
    uint32_t nmeta;
    uint32_t nstrings;
    oxp_sv_t *strings; /* owned */
    uint32_t nfuncs;
    const oxp_func_t *funcs;
    uint32_t nstacks;
    const oxp_stack_t *stacks;
    uint32_t nframes;
    const oxp_frame_t *frames;
    uint32_t nthreads;
    const oxp_thread_t *threads;
    uint32_t nrows;
    const oxp_count_t *rows;
    uint64_t total_hits, overflow_hits, overflow_gil_hits, overflow_cpu_ns;
    const uint8_t *timings; /* TIME entries (after the count), or NULL */
    size_t timings_len;
    uint32_t ntimings;
    int has_profile; /* the file had the database sections */
    int owns_tables; /* funcs, stacks, frames, threads, rows were allocated here */
} oxp_share_view_t;

/* Parses and checks a whole file: magic, version, sizes, checksum, every
 * section's bounds, every id against its table, stack depths.  0, or -1
 * with *why set (a static string); nothing to free on failure. */
int oxp_share_parse(const uint8_t *data, size_t len, oxp_share_view_t *v, const char **why);
/* A view of a database (frozen, or locked by the caller while in use). 0 / -1 (memory). */
int oxp_share_view_of_db(const oxp_db_t *db, oxp_share_view_t *v);
void oxp_share_view_free(oxp_share_view_t *v);

/* The META and TIME items of a checked view, one at a time: 1 and the item,
 * or 0 at the end. */
typedef struct {
    const char *key;
    size_t key_len;
    int type;
    int64_t i;
    double d;
    const char *s;
    size_t s_len;
} oxp_meta_item_t;
int oxp_meta_next(const uint8_t **cursor, const uint8_t *end, oxp_meta_item_t *item);

typedef struct {
    const char *name;
    size_t name_len;
    uint64_t count, errors;
    double total, max;
    uint32_t nbuckets;
    const uint8_t *buckets; /* nbuckets x {u32 index, u64 count}; read with oxp_timing_bucket */
} oxp_timing_item_t;
int oxp_timing_next(const uint8_t **cursor, const uint8_t *end, oxp_timing_item_t *item);
void oxp_timing_bucket(const oxp_timing_item_t *item, uint32_t i, uint32_t *index, uint64_t *count);

/* Adds everything of view v to dst as the data of process `process` (its
 * threads keep their identity within that process; `suffix`, when not NULL,
 * is appended to their names, e.g. " (pid 4242)").  dst has no cap
 * (a snapshot's database).  0, or -1 when out of memory. */
int oxp_share_merge(oxp_db_t *dst, const oxp_share_view_t *v, oxp_id_t process, const char *suffix);

/* CRC-32 (IEEE 802.3, as zlib's crc32). */
uint32_t oxp_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
