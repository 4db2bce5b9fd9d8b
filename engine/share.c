/* The shared-profile format (see share.h): encoding, private atomic files,
 * checked decoding, and merging into one database. */
#define _GNU_SOURCE
#include "share.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char magic[8] = {'O', 'X', 'P', 'S', 'H', 'A', 'R', 'E'};

#define TAG(a, b, c, d) ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
#define TAG_META TAG('M', 'E', 'T', 'A')
#define TAG_STRS TAG('S', 'T', 'R', 'S')
#define TAG_FUNC TAG('F', 'U', 'N', 'C')
#define TAG_STAK TAG('S', 'T', 'A', 'K')
#define TAG_THRD TAG('T', 'H', 'R', 'D')
#define TAG_ROWS TAG('R', 'O', 'W', 'S')
#define TAG_TOTL TAG('T', 'O', 'T', 'L')
#define TAG_TIME TAG('T', 'I', 'M', 'E')

/* Fixed sizes of the records in the sections. */
#define FUNC_SIZE 20u
#define THREAD_SIZE 20u
#define ROW_SIZE 37u
#define FRAME_SIZE 8u

/* -- CRC-32 ----------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint32_t oxp_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc = crc_table[(crc ^ data[i]) & 0xffu] ^ (crc >> 8);
    }
    return ~crc;
}

/* -- buffer ------------------------------------------------------------------- */

void oxp_buf_free(oxp_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int buf_reserve(oxp_buf_t *b, size_t extra)
{
    if (b->oom) {
        return -1;
    }
    if (extra > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put_bytes(oxp_buf_t *b, const void *data, size_t n)
{
    if (n == 0 || buf_reserve(b, n) < 0) {
        return;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u8(oxp_buf_t *b, uint8_t v)
{
    put_bytes(b, &v, 1);
}

static void put_u16(oxp_buf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put_bytes(b, x, 2);
}

static void put_u32(oxp_buf_t *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++) {
        x[i] = (uint8_t)(v >> (8 * i));
    }
    put_bytes(b, x, 4);
}

static void put_u64(oxp_buf_t *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (uint8_t)(v >> (8 * i));
    }
    put_bytes(b, x, 8);
}

static void put_f64(oxp_buf_t *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    put_u64(b, bits);
}

static void store_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void store_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static double get_f64(const uint8_t *p)
{
    uint64_t bits = get_u64(p);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* -- META and TIME items ------------------------------------------------------ */

static void meta_key(oxp_buf_t *b, const char *key, size_t key_len, uint8_t type)
{
    if (key_len > UINT16_MAX) {
        key_len = UINT16_MAX;
    }
    put_u16(b, (uint16_t)key_len);
    put_bytes(b, key, key_len);
    put_u8(b, type);
}

void oxp_meta_put_int(oxp_buf_t *b, const char *key, size_t key_len, int64_t v)
{
    meta_key(b, key, key_len, OXP_META_INT);
    put_u64(b, (uint64_t)v);
}

void oxp_meta_put_double(oxp_buf_t *b, const char *key, size_t key_len, double v)
{
    meta_key(b, key, key_len, OXP_META_DOUBLE);
    put_f64(b, v);
}

void oxp_meta_put_str(oxp_buf_t *b, const char *key, size_t key_len, const char *s, size_t len)
{
    if (len > UINT32_MAX) {
        len = UINT32_MAX;
    }
    meta_key(b, key, key_len, OXP_META_STR);
    put_u32(b, (uint32_t)len);
    put_bytes(b, s, len);
}

void oxp_meta_put_bool(oxp_buf_t *b, const char *key, size_t key_len, int v)
{
    meta_key(b, key, key_len, OXP_META_BOOL);
    put_u8(b, v ? 1 : 0);
}

void oxp_timing_put(oxp_buf_t *b, const char *name, size_t len, uint64_t count, double total, double max,
                    uint64_t errors, uint32_t nbuckets)
{
    if (len > UINT32_MAX) {
        len = UINT32_MAX;
    }
    put_u32(b, (uint32_t)len);
    put_bytes(b, name, len);
    put_u64(b, count);
    put_f64(b, total);
    put_f64(b, max);
    put_u64(b, errors);
    put_u32(b, nbuckets);
}

void oxp_timing_put_bucket(oxp_buf_t *b, uint32_t index, uint64_t count)
{
    put_u32(b, index);
    put_u64(b, count);
}

/* -- encoding --------------------------------------------------------------- */

/* Opens a section; returns where its length goes (patched by section_end). */
static size_t section_begin(oxp_buf_t *b, uint32_t tag, uint32_t *nsections)
{
    put_u32(b, tag);
    put_u32(b, 0);
    size_t at = b->len;
    put_u64(b, 0);
    (*nsections)++;
    return at;
}

static void section_end(oxp_buf_t *b, size_t at)
{
    if (b->oom) {
        return;
    }
    size_t body = b->len - (at + 8);
    store_u64(b->p + at, (uint64_t)body);
    static const uint8_t zeros[8] = {0};
    put_bytes(b, zeros, (8 - (body & 7u)) & 7u);
}

static void encode_db(oxp_buf_t *b, const oxp_db_t *db, uint32_t *nsec)
{
    size_t at = section_begin(b, TAG_STRS, nsec);
    size_t nstr = oxp_db_nstrings(db);
    const uint32_t *off = (const uint32_t *)db->str_off.data;
    put_u32(b, (uint32_t)nstr);
    for (size_t i = 0; i < nstr; i++) {
        size_t end = i + 1 < nstr ? off[i + 1] - 1 : db->chars.len - 1;
        put_u32(b, (uint32_t)(end - off[i]));
        put_bytes(b, (const char *)db->chars.data + off[i], end - off[i]);
    }
    section_end(b, at);

    at = section_begin(b, TAG_FUNC, nsec);
    put_u32(b, (uint32_t)db->funcs.len);
    for (size_t i = 0; i < db->funcs.len; i++) {
        const oxp_func_t *f = &oxp_db_funcs(db)[i];
        put_u32(b, f->name);
        put_u32(b, f->qualname);
        put_u32(b, f->module);
        put_u32(b, f->filename);
        put_u32(b, (uint32_t)f->firstlineno);
    }
    section_end(b, at);

    at = section_begin(b, TAG_STAK, nsec);
    put_u32(b, (uint32_t)db->stacks.len);
    put_u32(b, (uint32_t)db->frames.len);
    for (size_t i = 0; i < db->stacks.len; i++) {
        const oxp_stack_t *st = &oxp_db_stacks(db)[i];
        const oxp_frame_t *fr = oxp_db_frames(db) + st->offset;
        put_u32(b, st->depth);
        for (uint32_t k = 0; k < st->depth; k++) {
            put_u32(b, fr[k].func);
            put_u32(b, (uint32_t)fr[k].line);
        }
    }
    section_end(b, at);

    at = section_begin(b, TAG_THRD, nsec);
    put_u32(b, (uint32_t)db->threads.len);
    for (size_t i = 0; i < db->threads.len; i++) {
        const oxp_thread_t *t = &oxp_db_threads(db)[i];
        put_u64(b, t->ident);
        put_u64(b, t->native_id);
        put_u32(b, t->name);
    }
    section_end(b, at);

    at = section_begin(b, TAG_ROWS, nsec);
    put_u32(b, (uint32_t)db->counts.len);
    for (size_t i = 0; i < db->counts.len; i++) {
        const oxp_count_t *c = &oxp_db_counts(db)[i];
        put_u32(b, c->thread);
        put_u32(b, c->label);
        put_u32(b, c->stack);
        put_u8(b, c->idle ? 1 : 0);
        put_u64(b, c->hits);
        put_u64(b, c->gil_hits);
        put_u64(b, c->cpu_ns);
    }
    section_end(b, at);

    at = section_begin(b, TAG_TOTL, nsec);
    put_u64(b, db->total_hits);
    put_u64(b, db->overflow_hits);
    put_u64(b, db->overflow_gil_hits);
    put_u64(b, db->overflow_cpu_ns);
    section_end(b, at);
}

int oxp_share_encode(oxp_buf_t *out, const oxp_buf_t *meta, uint32_t nmeta, const oxp_db_t *db,
                     const oxp_buf_t *timings, uint32_t ntimings)
{
    uint32_t nsec = 0;
    out->len = 0;
    if (buf_reserve(out, OXP_SHARE_HEADER) < 0) {
        return -1;
    }
    memset(out->p, 0, OXP_SHARE_HEADER);
    out->len = OXP_SHARE_HEADER;

    size_t at = section_begin(out, TAG_META, &nsec);
    put_u32(out, nmeta);
    if (meta != NULL) {
        put_bytes(out, meta->p, meta->len);
    }
    section_end(out, at);
    if (db != NULL) {
        encode_db(out, db, &nsec);
    }
    if (timings != NULL) {
        at = section_begin(out, TAG_TIME, &nsec);
        put_u32(out, ntimings);
        put_bytes(out, timings->p, timings->len);
        section_end(out, at);
    }
    if (out->oom || (meta != NULL && meta->oom) || (timings != NULL && timings->oom)) {
        return -1;
    }
    uint8_t *h = out->p;
    memcpy(h, magic, sizeof(magic));
    store_u32(h + 8, OXP_SHARE_VERSION);
    store_u32(h + 12, OXP_SHARE_HEADER);
    store_u64(h + 16, (uint64_t)(out->len - OXP_SHARE_HEADER));
    store_u32(h + 24, 0);
    store_u32(h + 28, nsec);
    store_u32(h + 24, oxp_crc32(0, out->p, out->len));
    return 0;
}

/* -- files ------------------------------------------------------------------ */

int oxp_share_name_ok(const char *name, size_t len)
{
    return len > 0 && len <= OXP_SHARE_NAME_MAX && name[0] != '.' && memchr(name, '/', len) == NULL &&
           memchr(name, '\0', len) == NULL;
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int oxp_share_store(int dirfd, const char *name, const uint8_t *data, size_t len)
{
    size_t nlen = strlen(name);
    if (!oxp_share_name_ok(name, nlen)) {
        errno = EINVAL;
        return -1;
    }
    /* ".<name>.<pid>.tmp": private to this process, never read by others. */
    char tmp[OXP_SHARE_NAME_MAX + 40];
    snprintf(tmp, sizeof(tmp), ".%s.%ld.tmp", name, (long)getpid());
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, tmp, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* Left by an earlier attempt of this pid that did not finish. */
        (void)unlinkat(dirfd, tmp, 0);
        fd = openat(dirfd, tmp, flags, 0600);
    }
    if (fd < 0) {
        return -1;
    }
    int rc = write_all(fd, data, len);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        (void)unlinkat(dirfd, tmp, 0);
        errno = saved;
    }
    return rc;
}

int oxp_share_load(int dirfd, const char *name, size_t max_len, uint8_t **data, size_t *len, const char **why)
{
    *data = NULL;
    *len = 0;
    if (!oxp_share_name_ok(name, strlen(name))) {
        *why = "not a valid file name";
        return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        *why = errno == ELOOP ? "a symbolic link" : errno == ENOENT ? "gone" : "cannot be opened";
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        close(fd);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        *why = "owned by another user";
        close(fd);
        return -1;
    }
    if (st.st_size < (off_t)OXP_SHARE_HEADER) {
        *why = "truncated";
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_len) {
        *why = "larger than the size limit";
        close(fd);
        return -1;
    }
    size_t want = (size_t)st.st_size;
    uint8_t *buf = malloc(want);
    if (buf == NULL) {
        *why = "out of memory";
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (got != want) {
        free(buf);
        *why = "truncated while read";
        return -1;
    }
    *data = buf;
    *len = got;
    return 0;
}

/* -- decoding --------------------------------------------------------------- */

/* A bounded cursor: every read checks what is left first. */
typedef struct {
    const uint8_t *p, *end;
} cur_t;

static int need(const cur_t *c, size_t n)
{
    return (size_t)(c->end - c->p) >= n;
}

static int take_u32(cur_t *c, uint32_t *v)
{
    if (!need(c, 4)) {
        return -1;
    }
    *v = get_u32(c->p);
    c->p += 4;
    return 0;
}

int oxp_meta_next(const uint8_t **cursor, const uint8_t *end, oxp_meta_item_t *item)
{
    const uint8_t *p = *cursor;
    if (p == NULL || (size_t)(end - p) < 3) {
        return 0;
    }
    size_t klen = get_u16(p);
    if ((size_t)(end - p) < 2 + klen + 1) {
        return 0;
    }
    item->key = (const char *)p + 2;
    item->key_len = klen;
    p += 2 + klen;
    item->type = *p++;
    item->i = 0;
    item->d = 0;
    item->s = NULL;
    item->s_len = 0;
    size_t left = (size_t)(end - p);
    switch (item->type) {
    case OXP_META_INT:
        if (left < 8) {
            return 0;
        }
        item->i = (int64_t)get_u64(p);
        p += 8;
        break;
    case OXP_META_DOUBLE:
        if (left < 8) {
            return 0;
        }
        item->d = get_f64(p);
        p += 8;
        break;
    case OXP_META_STR: {
        if (left < 4) {
            return 0;
        }
        size_t n = get_u32(p);
        if (left - 4 < n) {
            return 0;
        }
        item->s = (const char *)p + 4;
        item->s_len = n;
        p += 4 + n;
        break;
    }
    case OXP_META_BOOL:
        if (left < 1) {
            return 0;
        }
        item->i = *p != 0;
        p += 1;
        break;
    default:
        return 0;
    }
    *cursor = p;
    return 1;
}

int oxp_timing_next(const uint8_t **cursor, const uint8_t *end, oxp_timing_item_t *item)
{
    const uint8_t *p = *cursor;
    if (p == NULL || (size_t)(end - p) < 4) {
        return 0;
    }
    size_t n = get_u32(p);
    /* name, count, total, max, errors, bucket count */
    if ((size_t)(end - p) - 4 < n || (size_t)(end - p) - 4 - n < 8 * 4 + 4) {
        return 0;
    }
    item->name = (const char *)p + 4;
    item->name_len = n;
    p += 4 + n;
    item->count = get_u64(p);
    item->total = get_f64(p + 8);
    item->max = get_f64(p + 16);
    item->errors = get_u64(p + 24);
    item->nbuckets = get_u32(p + 32);
    p += 36;
    if (item->nbuckets > OXP_SHARE_TIMING_BUCKETS || (size_t)(end - p) / 12 < item->nbuckets) {
        return 0;
    }
    item->buckets = p;
    p += (size_t)item->nbuckets * 12;
    *cursor = p;
    return 1;
}

void oxp_timing_bucket(const oxp_timing_item_t *item, uint32_t i, uint32_t *index, uint64_t *count)
{
    const uint8_t *p = item->buckets + (size_t)i * 12;
    *index = get_u32(p);
    *count = get_u64(p + 4);
}

void oxp_share_view_free(oxp_share_view_t *v)
{
    free(v->strings);
    if (v->owns_tables) {
        free((void *)v->funcs);
        free((void *)v->stacks);
        free((void *)v->frames);
        free((void *)v->threads);
        free((void *)v->rows);
    }
    memset(v, 0, sizeof(*v));
}

static int parse_meta(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > OXP_SHARE_META_MAX) {
        *why = "bad META section";
        return -1;
    }
    const uint8_t *p = c.p;
    oxp_meta_item_t item;
    for (uint32_t i = 0; i < n; i++) {
        if (!oxp_meta_next(&p, c.end, &item)) {
            *why = "bad META item";
            return -1;
        }
    }
    v->meta = c.p;
    v->meta_len = (size_t)(p - c.p);
    v->nmeta = n;
    return 0;
}

static int parse_time(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > (size_t)(c.end - c.p) / 40) {
        *why = "bad TIME section";
        return -1;
    }
    const uint8_t *p = c.p;
    oxp_timing_item_t item;
    for (uint32_t i = 0; i < n; i++) {
        if (!oxp_timing_next(&p, c.end, &item)) {
            *why = "bad TIME entry";
            return -1;
        }
    }
    v->timings = c.p;
    v->timings_len = (size_t)(p - c.p);
    v->ntimings = n;
    return 0;
}

static int parse_strs(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > (size_t)(c.end - c.p) / 4 || n >= OXP_NO_ID) {
        *why = "bad STRS section";
        return -1;
    }
    v->strings = calloc((size_t)n + 1, sizeof(oxp_sv_t));
    if (v->strings == NULL) {
        *why = "out of memory";
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        if (take_u32(&c, &len) < 0 || !need(&c, len)) {
            *why = "bad string";
            return -1;
        }
        v->strings[i].p = c.p;
        v->strings[i].len = len;
        c.p += len;
    }
    v->nstrings = n;
    return 0;
}

static int str_ok(const oxp_share_view_t *v, uint32_t id)
{
    return id < v->nstrings;
}

static int parse_funcs(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > (size_t)(c.end - c.p) / FUNC_SIZE || n >= OXP_NO_ID) {
        *why = "bad FUNC section";
        return -1;
    }
    oxp_func_t *f = calloc((size_t)n + 1, sizeof(oxp_func_t));
    if (f == NULL) {
        *why = "out of memory";
        return -1;
    }
    v->funcs = f;
    for (uint32_t i = 0; i < n; i++, c.p += FUNC_SIZE) {
        f[i].name = get_u32(c.p);
        f[i].qualname = get_u32(c.p + 4);
        f[i].module = get_u32(c.p + 8);
        f[i].filename = get_u32(c.p + 12);
        f[i].firstlineno = (int32_t)get_u32(c.p + 16);
        if (!str_ok(v, f[i].name) || !str_ok(v, f[i].qualname) || !str_ok(v, f[i].module) ||
            !str_ok(v, f[i].filename)) {
            *why = "a function names a missing string";
            return -1;
        }
    }
    v->nfuncs = n;
    return 0;
}

static int parse_stacks(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n, nframes;
    if (take_u32(&c, &n) < 0 || take_u32(&c, &nframes) < 0 || n > (size_t)(c.end - c.p) / 4 ||
        nframes > (size_t)(c.end - c.p) / FRAME_SIZE || n >= OXP_NO_ID) {
        *why = "bad STAK section";
        return -1;
    }
    oxp_stack_t *st = calloc((size_t)n + 1, sizeof(oxp_stack_t));
    oxp_frame_t *fr = calloc((size_t)nframes + 1, sizeof(oxp_frame_t));
    v->stacks = st;
    v->frames = fr;
    if (st == NULL || fr == NULL) {
        *why = "out of memory";
        return -1;
    }
    uint32_t used = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t depth;
        if (take_u32(&c, &depth) < 0 || depth > OXP_MAX_DEPTH || depth > nframes - used ||
            !need(&c, (size_t)depth * FRAME_SIZE)) {
            *why = "bad stack";
            return -1;
        }
        st[i].offset = used;
        st[i].depth = depth;
        for (uint32_t k = 0; k < depth; k++, c.p += FRAME_SIZE) {
            fr[used + k].func = get_u32(c.p);
            fr[used + k].line = (int32_t)get_u32(c.p + 4);
            if (fr[used + k].func >= v->nfuncs) {
                *why = "a frame names a missing function";
                return -1;
            }
        }
        used += depth;
    }
    if (used != nframes) {
        *why = "stack frames do not add up";
        return -1;
    }
    v->nstacks = n;
    v->nframes = nframes;
    return 0;
}

static int parse_threads(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > (size_t)(c.end - c.p) / THREAD_SIZE || n >= OXP_NO_ID) {
        *why = "bad THRD section";
        return -1;
    }
    oxp_thread_t *t = calloc((size_t)n + 1, sizeof(oxp_thread_t));
    if (t == NULL) {
        *why = "out of memory";
        return -1;
    }
    v->threads = t;
    for (uint32_t i = 0; i < n; i++, c.p += THREAD_SIZE) {
        t[i].ident = get_u64(c.p);
        t[i].native_id = get_u64(c.p + 8);
        t[i].name = get_u32(c.p + 16);
        t[i].process = OXP_NO_ID;
        if (t[i].name != OXP_NO_ID && !str_ok(v, t[i].name)) {
            *why = "a thread names a missing string";
            return -1;
        }
    }
    v->nthreads = n;
    return 0;
}

static int parse_rows(oxp_share_view_t *v, cur_t c, const char **why)
{
    uint32_t n;
    if (take_u32(&c, &n) < 0 || n > (size_t)(c.end - c.p) / ROW_SIZE || n >= OXP_NO_ID) {
        *why = "bad ROWS section";
        return -1;
    }
    oxp_count_t *r = calloc((size_t)n + 1, sizeof(oxp_count_t));
    if (r == NULL) {
        *why = "out of memory";
        return -1;
    }
    v->rows = r;
    for (uint32_t i = 0; i < n; i++, c.p += ROW_SIZE) {
        r[i].thread = get_u32(c.p);
        r[i].label = get_u32(c.p + 4);
        r[i].stack = get_u32(c.p + 8);
        r[i].idle = c.p[12] != 0;
        r[i].hits = get_u64(c.p + 13);
        r[i].gil_hits = get_u64(c.p + 21);
        r[i].cpu_ns = get_u64(c.p + 29);
        if (r[i].thread >= v->nthreads || r[i].stack >= v->nstacks ||
            (r[i].label != OXP_NO_ID && !str_ok(v, r[i].label))) {
            *why = "a row names a missing thread, label or stack";
            return -1;
        }
    }
    v->nrows = n;
    return 0;
}

int oxp_share_parse(const uint8_t *data, size_t len, oxp_share_view_t *v, const char **why)
{
    memset(v, 0, sizeof(*v));
    v->owns_tables = 1;
    if (len < OXP_SHARE_HEADER || memcmp(data, magic, sizeof(magic)) != 0) {
        *why = len < OXP_SHARE_HEADER ? "truncated" : "not an ox_profile shared file";
        return -1;
    }
    uint32_t version = get_u32(data + 8), hsize = get_u32(data + 12), nsec = get_u32(data + 28);
    uint64_t payload = get_u64(data + 16);
    if (version != OXP_SHARE_VERSION) {
        *why = "written by another format version";
        return -1;
    }
    if (hsize != OXP_SHARE_HEADER || payload != (uint64_t)(len - OXP_SHARE_HEADER)) {
        *why = len - OXP_SHARE_HEADER < payload ? "truncated" : "sizes do not match";
        return -1;
    }
    uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t crc = oxp_crc32(0, data, 24);
    crc = oxp_crc32(crc, zero, 4);
    crc = oxp_crc32(crc, data + 28, len - 28);
    if (crc != get_u32(data + 24)) {
        *why = "checksum mismatch";
        return -1;
    }
    /* Sections, each found once; the profile's are decoded in dependency
     * order (strings, functions, stacks, threads, rows) whatever their order
     * in the file. */
    cur_t found[8];
    const uint32_t tags[8] = {TAG_META, TAG_STRS, TAG_FUNC, TAG_STAK, TAG_THRD, TAG_ROWS, TAG_TOTL, TAG_TIME};
    int have[8] = {0};
    cur_t c = {data + OXP_SHARE_HEADER, data + len};
    for (uint32_t s = 0; s < nsec; s++) {
        uint32_t tag, reserved;
        if (take_u32(&c, &tag) < 0 || take_u32(&c, &reserved) < 0 || !need(&c, 8)) {
            *why = "truncated section header";
            goto fail;
        }
        uint64_t blen = get_u64(c.p);
        c.p += 8;
        if (blen > (uint64_t)(c.end - c.p)) {
            *why = "section longer than the file";
            goto fail;
        }
        cur_t body = {c.p, c.p + blen};
        size_t pad = (size_t)((8 - (blen & 7u)) & 7u);
        c.p += blen;
        c.p = (size_t)(c.end - c.p) < pad ? c.end : c.p + pad;
        for (int k = 0; k < 8; k++) {
            if (tags[k] == tag) {
                if (have[k]) {
                    *why = "a section appears twice";
                    goto fail;
                }
                have[k] = 1;
                found[k] = body;
            }
        }
    }
    if (c.p != c.end) {
        *why = "bytes after the last section";
        goto fail;
    }
    if (!have[0]) {
        *why = "no META section";
        goto fail;
    }
    if (parse_meta(v, found[0], why) < 0) {
        goto fail;
    }
    int profile = have[1] + have[2] + have[3] + have[4] + have[5] + have[6];
    if (profile != 0 && profile != 6) {
        *why = "profile sections missing";
        goto fail;
    }
    if (profile) {
        if (parse_strs(v, found[1], why) < 0 || parse_funcs(v, found[2], why) < 0 ||
            parse_stacks(v, found[3], why) < 0 || parse_threads(v, found[4], why) < 0 ||
            parse_rows(v, found[5], why) < 0) {
            goto fail;
        }
        cur_t t = found[6];
        if (!need(&t, 32)) {
            *why = "bad TOTL section";
            goto fail;
        }
        v->total_hits = get_u64(t.p);
        v->overflow_hits = get_u64(t.p + 8);
        v->overflow_gil_hits = get_u64(t.p + 16);
        v->overflow_cpu_ns = get_u64(t.p + 24);
        v->has_profile = 1;
    }
    if (have[7] && parse_time(v, found[7], why) < 0) {
        goto fail;
    }
    return 0;
fail:
    oxp_share_view_free(v);
    return -1;
}

int oxp_share_view_of_db(const oxp_db_t *db, oxp_share_view_t *v)
{
    memset(v, 0, sizeof(*v));
    size_t nstr = oxp_db_nstrings(db);
    v->strings = calloc(nstr + 1, sizeof(oxp_sv_t));
    if (v->strings == NULL) {
        return -1;
    }
    const uint32_t *off = (const uint32_t *)db->str_off.data;
    for (size_t i = 0; i < nstr; i++) {
        size_t end = i + 1 < nstr ? off[i + 1] - 1 : db->chars.len - 1;
        v->strings[i].p = (const uint8_t *)db->chars.data + off[i];
        v->strings[i].len = (uint32_t)(end - off[i]);
    }
    v->nstrings = (uint32_t)nstr;
    v->funcs = oxp_db_funcs(db);
    v->nfuncs = (uint32_t)db->funcs.len;
    v->stacks = oxp_db_stacks(db);
    v->nstacks = (uint32_t)db->stacks.len;
    v->frames = oxp_db_frames(db);
    v->nframes = (uint32_t)db->frames.len;
    v->threads = oxp_db_threads(db);
    v->nthreads = (uint32_t)db->threads.len;
    v->rows = oxp_db_counts(db);
    v->nrows = (uint32_t)db->counts.len;
    v->total_hits = db->total_hits;
    v->overflow_hits = db->overflow_hits;
    v->overflow_gil_hits = db->overflow_gil_hits;
    v->overflow_cpu_ns = db->overflow_cpu_ns;
    v->has_profile = 1;
    v->owns_tables = 0;
    return 0;
}

/* -- merging ---------------------------------------------------------------- */

static int intern_sv(oxp_db_t *dst, const oxp_sv_t *s, oxp_id_t *out)
{
    return oxp_db_intern(dst, (const char *)s->p, s->len, out);
}

/* Names thread `tid` of dst "<name><suffix>", or "Thread-<native><suffix>". */
static int name_thread(oxp_db_t *dst, oxp_id_t tid, const oxp_share_view_t *v, const oxp_thread_t *t,
                       const char *suffix)
{
    if (suffix == NULL) {
        if (t->name == OXP_NO_ID) {
            return 0;
        }
        const oxp_sv_t *s = &v->strings[t->name];
        return oxp_db_thread_set_name(dst, tid, (const char *)s->p, s->len);
    }
    size_t slen = strlen(suffix), nlen;
    char fallback[48];
    const char *name;
    if (t->name == OXP_NO_ID) {
        nlen = (size_t)snprintf(fallback, sizeof(fallback), "Thread-%llu", (unsigned long long)t->native_id);
        name = fallback;
    } else {
        name = (const char *)v->strings[t->name].p;
        nlen = v->strings[t->name].len;
    }
    char *full = malloc(nlen + slen + 1);
    if (full == NULL) {
        return -1;
    }
    memcpy(full, name, nlen);
    memcpy(full + nlen, suffix, slen + 1);
    int rc = oxp_db_thread_set_name(dst, tid, full, nlen + slen);
    free(full);
    return rc;
}

int oxp_share_merge(oxp_db_t *dst, const oxp_share_view_t *v, oxp_id_t process, const char *suffix)
{
    if (!v->has_profile) {
        return 0;
    }
    int rc = -1;
    oxp_id_t *smap = malloc(((size_t)v->nstrings + 1) * sizeof(oxp_id_t));
    oxp_id_t *fmap = malloc(((size_t)v->nfuncs + 1) * sizeof(oxp_id_t));
    oxp_id_t *kmap = malloc(((size_t)v->nstacks + 1) * sizeof(oxp_id_t));
    oxp_id_t *tmap = malloc(((size_t)v->nthreads + 1) * sizeof(oxp_id_t));
    oxp_frame_t *scratch = malloc(((size_t)OXP_MAX_DEPTH + 1) * sizeof(oxp_frame_t));
    if (smap == NULL || fmap == NULL || kmap == NULL || tmap == NULL || scratch == NULL) {
        goto done;
    }
    /* Strings only when something refers to them: a file's table may hold
     * labels and names of rows that are gone. */
    for (uint32_t i = 0; i < v->nstrings; i++) {
        smap[i] = OXP_NO_ID;
    }
    for (uint32_t i = 0; i < v->nfuncs; i++) {
        const oxp_func_t *f = &v->funcs[i];
        oxp_id_t ids[4];
        const oxp_id_t src[4] = {f->name, f->qualname, f->module, f->filename};
        for (int k = 0; k < 4; k++) {
            if (smap[src[k]] == OXP_NO_ID && intern_sv(dst, &v->strings[src[k]], &smap[src[k]]) < 0) {
                goto done;
            }
            ids[k] = smap[src[k]];
        }
        oxp_func_t g = {ids[0], ids[1], ids[2], ids[3], f->firstlineno};
        if (oxp_db_func(dst, &g, &fmap[i]) < 0) {
            goto done;
        }
    }
    for (uint32_t i = 0; i < v->nstacks; i++) {
        const oxp_stack_t *st = &v->stacks[i];
        const oxp_frame_t *fr = v->frames + st->offset;
        uint32_t depth = st->depth > OXP_MAX_DEPTH ? OXP_MAX_DEPTH : st->depth;
        for (uint32_t k = 0; k < depth; k++) {
            scratch[k].func = fmap[fr[k].func];
            scratch[k].line = fr[k].line;
        }
        if (oxp_db_stack(dst, scratch, depth, &kmap[i]) < 0) {
            goto done;
        }
    }
    for (uint32_t i = 0; i < v->nthreads; i++) {
        const oxp_thread_t *t = &v->threads[i];
        if (oxp_db_thread_in(dst, process, t->ident, t->native_id, &tmap[i]) < 0 ||
            name_thread(dst, tmap[i], v, t, suffix) < 0) {
            goto done;
        }
    }
    for (uint32_t i = 0; i < v->nrows; i++) {
        const oxp_count_t *r = &v->rows[i];
        oxp_id_t label = OXP_NO_ID;
        if (r->label != OXP_NO_ID) {
            if (smap[r->label] == OXP_NO_ID && intern_sv(dst, &v->strings[r->label], &smap[r->label]) < 0) {
                goto done;
            }
            label = smap[r->label];
        }
        if (oxp_db_add_count(dst, tmap[r->thread], label, kmap[r->stack], r->idle, r->hits, r->gil_hits,
                             r->cpu_ns) < 0) {
            goto done;
        }
    }
    dst->overflow_hits += v->overflow_hits;
    dst->overflow_gil_hits += v->overflow_gil_hits;
    dst->overflow_cpu_ns += v->overflow_cpu_ns;
    dst->total_hits += v->overflow_hits;
    rc = 0;
done:
    free(smap);
    free(fmap);
    free(kmap);
    free(tmap);
    free(scratch);
    return rc;
}
