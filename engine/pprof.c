/* pprof encoder: the profile database -> an uncompressed pprof Profile message.
 *
 * The protobuf wire format is written by hand into one growable buffer.  The
 * top-level fields go out in the order sample_type, sample, location,
 * function, period/time scalars and string_table last (protobuf readers accept
 * fields in any order), so every string and location is known by the time its
 * table is written.  Strings and locations are deduplicated with open
 * addressing hash tables.  Errors are out-of-memory only; they are sticky in
 * the buffers and tables and checked at the end. */
#include "pprof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wire types. */
#define WT_VARINT 0u
#define WT_LEN 2u

/* Field numbers of perftools.profiles messages. */
enum {
    PROFILE_SAMPLE_TYPE = 1,
    PROFILE_SAMPLE = 2,
    PROFILE_LOCATION = 4,
    PROFILE_FUNCTION = 5,
    PROFILE_STRING_TABLE = 6,
    PROFILE_TIME_NANOS = 9,
    PROFILE_DURATION_NANOS = 10,
    PROFILE_PERIOD_TYPE = 11,
    PROFILE_PERIOD = 12,
    VALUETYPE_TYPE = 1,
    VALUETYPE_UNIT = 2,
    SAMPLE_LOCATION_ID = 1,
    SAMPLE_VALUE = 2,
    SAMPLE_LABEL = 3,
    LABEL_KEY = 1,
    LABEL_STR = 2,
    LABEL_NUM = 3,
    LOCATION_ID = 1,
    LOCATION_LINE = 4,
    LINE_FUNCTION_ID = 1,
    LINE_LINE = 2,
    FUNCTION_ID = 1,
    FUNCTION_NAME = 2,
    FUNCTION_SYSTEM_NAME = 3,
    FUNCTION_FILENAME = 4,
    FUNCTION_START_LINE = 5
};

/* ---------------------------------------------------------------------------
 * Growable byte buffer with a sticky out-of-memory flag. */

typedef struct {
    uint8_t *p;
    size_t len;
    size_t cap;
    int oom;
} pbuf_t;

static int pb_reserve(pbuf_t *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void pb_varint(pbuf_t *b, uint64_t v)
{
    if (pb_reserve(b, 10))
        return;
    uint8_t *q = b->p + b->len;
    while (v >= 0x80) {
        *q++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *q++ = (uint8_t)v;
    b->len = (size_t)(q - b->p);
}

static void pb_key(pbuf_t *b, unsigned field, unsigned wire)
{
    pb_varint(b, ((uint64_t)field << 3) | wire);
}

/* A scalar (u)int64 field; proto3 omits zeros. Negative int64 values are
 * passed as their two's complement, which is how int64 is encoded. */
static void pb_uint(pbuf_t *b, unsigned field, uint64_t v)
{
    if (v) {
        pb_key(b, field, WT_VARINT);
        pb_varint(b, v);
    }
}

static void pb_raw(pbuf_t *b, const void *data, size_t len)
{
    if (len == 0 || pb_reserve(b, len))
        return;
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

/* A length-delimited field (string, bytes or an embedded message). */
static void pb_bytes(pbuf_t *b, unsigned field, const void *data, size_t len)
{
    pb_key(b, field, WT_LEN);
    pb_varint(b, len);
    pb_raw(b, data, len);
}

/* ---------------------------------------------------------------------------
 * Hashing. */

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* Slot arrays: power-of-two capacity, slot value = item index + 1, 0 empty. */
static uint32_t *slots_alloc(uint32_t cap)
{
    return calloc(cap, sizeof(uint32_t));
}

/* ---------------------------------------------------------------------------
 * String table. */

typedef struct {
    const char *s;
    size_t len;
    uint32_t hash;
} pstr_t;

typedef struct {
    pstr_t *items;
    size_t n, cap;
    uint32_t *slots;
    uint32_t mask;
    uint32_t *db_map; /* per database string id: table index + 1, 0 = not yet */
    size_t db_n;
    char **owned; /* strings made here (thread names), freed at the end */
    size_t nowned, owned_cap;
    int oom;
} strtab_t;

static int strtab_init(strtab_t *t, size_t db_strings)
{
    memset(t, 0, sizeof(*t));
    t->cap = 64;
    t->items = malloc(t->cap * sizeof(pstr_t));
    t->mask = 127;
    t->slots = slots_alloc(t->mask + 1);
    t->db_n = db_strings;
    t->db_map = calloc(db_strings ? db_strings : 1, sizeof(uint32_t));
    if (!t->items || !t->slots || !t->db_map) {
        t->oom = 1;
        return -1;
    }
    return 0;
}

static void strtab_free(strtab_t *t)
{
    for (size_t i = 0; i < t->nowned; i++)
        free(t->owned[i]);
    free(t->owned);
    free(t->items);
    free(t->slots);
    free(t->db_map);
}

static int strtab_grow_slots(strtab_t *t)
{
    uint32_t ncap = (t->mask + 1) * 2;
    if (ncap == 0) /* wrapped: more than 2^31 strings */
        return -1;
    uint32_t *slots = slots_alloc(ncap);
    if (!slots)
        return -1;
    uint32_t mask = ncap - 1;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t h = t->items[i].hash & mask;
        while (slots[h])
            h = (h + 1) & mask;
        slots[h] = (uint32_t)(i + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

/* The index of string s in the table (added if new); 0 on out of memory (the
 * index of "", so the output stays well formed until the error is seen). */
static uint64_t strtab_add(strtab_t *t, const char *s, size_t len)
{
    if (t->oom)
        return 0;
    uint32_t hash = hash_bytes(s, len);
    uint32_t h = hash & t->mask;
    for (uint32_t v; (v = t->slots[h]) != 0; h = (h + 1) & t->mask) {
        const pstr_t *e = &t->items[v - 1];
        if (e->hash == hash && e->len == len && memcmp(e->s, s, len) == 0)
            return v - 1;
    }
    if ((t->n + 1) * 2 > (size_t)t->mask + 1) {
        if (strtab_grow_slots(t)) {
            t->oom = 1;
            return 0;
        }
        h = hash & t->mask;
        while (t->slots[h])
            h = (h + 1) & t->mask;
    }
    if (t->n == t->cap) {
        pstr_t *items = realloc(t->items, t->cap * 2 * sizeof(pstr_t));
        if (!items) {
            t->oom = 1;
            return 0;
        }
        t->items = items;
        t->cap *= 2;
    }
    t->items[t->n].s = s;
    t->items[t->n].len = len;
    t->items[t->n].hash = hash;
    t->slots[h] = (uint32_t)(t->n + 1);
    return t->n++;
}

static uint64_t strtab_cstr(strtab_t *t, const char *s)
{
    return strtab_add(t, s, strlen(s));
}

/* The table index of database string `id` ("" when there is none). */
static uint64_t strtab_db(strtab_t *t, const oxp_db_t *db, oxp_id_t id)
{
    if (id == OXP_NO_ID || (size_t)id >= t->db_n)
        return 0;
    if (t->db_map[id])
        return t->db_map[id] - 1;
    uint64_t ix = strtab_cstr(t, oxp_db_str(db, id));
    if (!t->oom)
        t->db_map[id] = (uint32_t)(ix + 1);
    return ix;
}

/* Add a string the table must own (freed with it). */
static uint64_t strtab_owned(strtab_t *t, char *s)
{
    if (!s) {
        t->oom = 1;
        return 0;
    }
    if (t->nowned == t->owned_cap) {
        size_t ncap = t->owned_cap ? t->owned_cap * 2 : 16;
        char **owned = realloc(t->owned, ncap * sizeof(char *));
        if (!owned) {
            free(s);
            t->oom = 1;
            return 0;
        }
        t->owned = owned;
        t->owned_cap = ncap;
    }
    t->owned[t->nowned++] = s;
    return strtab_cstr(t, s);
}

/* ---------------------------------------------------------------------------
 * Location table: one location per distinct (function, line). */

typedef struct {
    oxp_frame_t *items; /* location id i + 1 is items[i] */
    size_t n, cap;
    uint32_t *slots;
    uint32_t mask;
    int oom;
} loctab_t;

static uint64_t frame_key(oxp_id_t func, int32_t line)
{
    return ((uint64_t)func << 32) | (uint32_t)line;
}

static int loctab_init(loctab_t *t)
{
    memset(t, 0, sizeof(*t));
    t->cap = 256;
    t->items = malloc(t->cap * sizeof(oxp_frame_t));
    t->mask = 511;
    t->slots = slots_alloc(t->mask + 1);
    if (!t->items || !t->slots) {
        t->oom = 1;
        return -1;
    }
    return 0;
}

static void loctab_free(loctab_t *t)
{
    free(t->items);
    free(t->slots);
}

static int loctab_grow_slots(loctab_t *t)
{
    uint32_t ncap = (t->mask + 1) * 2;
    if (ncap == 0)
        return -1;
    uint32_t *slots = slots_alloc(ncap);
    if (!slots)
        return -1;
    uint32_t mask = ncap - 1;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t h = hash_u64(frame_key(t->items[i].func, t->items[i].line)) & mask;
        while (slots[h])
            h = (h + 1) & mask;
        slots[h] = (uint32_t)(i + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

/* The location id (>= 1) of (func, line), added if new; 0 on out of memory. */
static uint64_t loctab_add(loctab_t *t, oxp_id_t func, int32_t line)
{
    if (t->oom)
        return 0;
    uint32_t hash = hash_u64(frame_key(func, line));
    uint32_t h = hash & t->mask;
    for (uint32_t v; (v = t->slots[h]) != 0; h = (h + 1) & t->mask) {
        const oxp_frame_t *e = &t->items[v - 1];
        if (e->func == func && e->line == line)
            return v;
    }
    if ((t->n + 1) * 2 > (size_t)t->mask + 1) {
        if (loctab_grow_slots(t)) {
            t->oom = 1;
            return 0;
        }
        h = hash & t->mask;
        while (t->slots[h])
            h = (h + 1) & t->mask;
    }
    if (t->n == t->cap) {
        oxp_frame_t *items = realloc(t->items, t->cap * 2 * sizeof(oxp_frame_t));
        if (!items) {
            t->oom = 1;
            return 0;
        }
        t->items = items;
        t->cap *= 2;
    }
    t->items[t->n].func = func;
    t->items[t->n].line = line;
    t->slots[h] = (uint32_t)(t->n + 1);
    return ++t->n;
}

/* ---------------------------------------------------------------------------
 * Messages. */

/* A ValueType {type, unit} as field `field` of Profile. */
static void put_value_type(pbuf_t *out, strtab_t *st, unsigned field, const char *type,
                           const char *unit)
{
    uint64_t t = strtab_cstr(st, type), u = strtab_cstr(st, unit);
    size_t len = (t ? 1 + varint_size(t) : 0) + (u ? 1 + varint_size(u) : 0);
    pb_key(out, field, WT_LEN);
    pb_varint(out, len);
    pb_uint(out, VALUETYPE_TYPE, t);
    pb_uint(out, VALUETYPE_UNIT, u);
}

/* A Label {key, str} or {key, num} into a Sample being built. */
static void put_label(pbuf_t *b, uint64_t key, uint64_t str, uint64_t num)
{
    size_t len = 1 + varint_size(key) + (str ? 1 + varint_size(str) : 0) +
                 (num ? 1 + varint_size(num) : 0);
    pb_key(b, SAMPLE_LABEL, WT_LEN);
    pb_varint(b, len);
    pb_uint(b, LABEL_KEY, key);
    pb_uint(b, LABEL_STR, str);
    pb_uint(b, LABEL_NUM, num);
}

/* A packed repeated varint field. */
static void put_packed(pbuf_t *b, unsigned field, const uint64_t *v, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += varint_size(v[i]);
    pb_key(b, field, WT_LEN);
    pb_varint(b, len);
    if (pb_reserve(b, len))
        return;
    for (size_t i = 0; i < n; i++)
        pb_varint(b, v[i]);
}

static void put_location(pbuf_t *out, uint64_t id, uint64_t func_id, int32_t line)
{
    uint64_t l = (uint64_t)(int64_t)line;
    size_t line_len = 1 + varint_size(func_id) + (l ? 1 + varint_size(l) : 0);
    size_t len = 1 + varint_size(id) + 1 + varint_size(line_len) + line_len;
    pb_key(out, PROFILE_LOCATION, WT_LEN);
    pb_varint(out, len);
    pb_uint(out, LOCATION_ID, id);
    pb_key(out, LOCATION_LINE, WT_LEN);
    pb_varint(out, line_len);
    pb_uint(out, LINE_FUNCTION_ID, func_id);
    pb_uint(out, LINE_LINE, l);
}

static void put_function(pbuf_t *out, uint64_t id, uint64_t name, uint64_t system_name,
                         uint64_t filename, int32_t start_line)
{
    uint64_t sl = (uint64_t)(int64_t)start_line;
    size_t len = 1 + varint_size(id) + (name ? 1 + varint_size(name) : 0) +
                 (system_name ? 1 + varint_size(system_name) : 0) +
                 (filename ? 1 + varint_size(filename) : 0) + (sl ? 1 + varint_size(sl) : 0);
    pb_key(out, PROFILE_FUNCTION, WT_LEN);
    pb_varint(out, len);
    pb_uint(out, FUNCTION_ID, id);
    pb_uint(out, FUNCTION_NAME, name);
    pb_uint(out, FUNCTION_SYSTEM_NAME, system_name);
    pb_uint(out, FUNCTION_FILENAME, filename);
    pb_uint(out, FUNCTION_START_LINE, sl);
}

/* A function's name and system_name.  The name is module-qualified
 * ("pkg.mod.Class.method", "pkg.mod.<module>") so that functions of different
 * modules never merge into one row, and the qualname alone only when the
 * module is unknown.  system_name is the qualname when it differs from the
 * name, else empty: pprof takes a function whose system_name equals its name
 * for a C++ symbol to "demangle" and cuts everything between '<' and '>' out of
 * it, which turns "<module>" into "<unknown>". */
static void function_names(strtab_t *st, const oxp_db_t *db, const oxp_func_t *f, uint64_t *name,
                           uint64_t *system_name)
{
    const char *module = oxp_db_str(db, f->module), *qualname = oxp_db_str(db, f->qualname);
    if (module[0] == '\0' || strcmp(module, "?") == 0) {
        *name = strtab_db(st, db, f->qualname);
        *system_name = 0;
        return;
    }
    size_t mlen = strlen(module), qlen = strlen(qualname);
    char *full = malloc(mlen + 1 + qlen + 1);
    if (full != NULL) {
        memcpy(full, module, mlen);
        full[mlen] = '.';
        memcpy(full + mlen + 1, qualname, qlen + 1);
    }
    *name = strtab_owned(st, full); /* sets st->oom when full is NULL */
    *system_name = strtab_db(st, db, f->qualname);
}

/* ---------------------------------------------------------------------------
 * The encoder. */

int oxp_pprof_encode(const oxp_db_t *db, const uint8_t *mask, const oxp_pprof_opts_t *opts,
                     uint8_t **out, size_t *out_len)
{
    static const oxp_pprof_opts_t no_opts = {0, 0, 0, 0, NULL};
    if (!opts)
        opts = &no_opts;
    *out = NULL;
    *out_len = 0;

    const size_t nfuncs = db->funcs.len, nthreads = db->threads.len;
    const size_t nstacks = db->stacks.len, ncounts = db->counts.len;
    const oxp_func_t *funcs = oxp_db_funcs(db);
    const oxp_thread_t *threads = oxp_db_threads(db);
    const oxp_stack_t *stacks = oxp_db_stacks(db);
    const oxp_frame_t *frames = oxp_db_frames(db);
    const oxp_count_t *counts = oxp_db_counts(db);

    pbuf_t buf = {0}, sample = {0};
    strtab_t st;
    loctab_t lt;
    uint64_t *thread_name = NULL, *ids = NULL;
    size_t ids_cap = 0;
    int rc = -1;
    int st_ok = strtab_init(&st, oxp_db_nstrings(db)) == 0;
    int lt_ok = loctab_init(&lt) == 0;
    if (!st_ok || !lt_ok)
        goto done;

    /* string_table[0] must be "". */
    strtab_add(&st, "", 0);

    put_value_type(&buf, &st, PROFILE_SAMPLE_TYPE, "samples", "count");
    put_value_type(&buf, &st, PROFILE_SAMPLE_TYPE, "wall", "nanoseconds");
    if (opts->cpu_mode)
        put_value_type(&buf, &st, PROFILE_SAMPLE_TYPE, "cpu", "nanoseconds");
    const uint64_t k_thread = strtab_cstr(&st, "thread");
    const uint64_t k_thread_id = strtab_cstr(&st, "thread_id");
    const uint64_t k_endpoint = strtab_cstr(&st, "endpoint");
    const uint64_t k_state = strtab_cstr(&st, "thread_state");
    const uint64_t v_idle = strtab_cstr(&st, "idle");

    /* Each thread's name: from opts, else the database, else Thread-<native_id>;
     * resolved lazily (0 = not yet, else index + 1). */
    thread_name = calloc(nthreads ? nthreads : 1, sizeof(uint64_t));
    if (!thread_name)
        goto done;

    for (size_t i = 0; i < ncounts; i++) {
        if (mask && !mask[i])
            continue;
        const oxp_count_t *c = &counts[i];

        /* location_id, leaf first (the database stack already is). */
        size_t n = 0;
        if (c->stack < nstacks) {
            const oxp_stack_t *s = &stacks[c->stack];
            if (s->depth > ids_cap) {
                size_t ncap = ids_cap ? ids_cap : 64;
                while (ncap < s->depth)
                    ncap *= 2;
                uint64_t *nids = realloc(ids, ncap * sizeof(uint64_t));
                if (!nids)
                    goto done;
                ids = nids;
                ids_cap = ncap;
            }
            const oxp_frame_t *f = frames + s->offset;
            for (uint32_t d = 0; d < s->depth; d++) {
                if (f[d].func >= nfuncs) /* not a function: cannot be referenced */
                    continue;
                ids[n++] = loctab_add(&lt, f[d].func, f[d].line);
            }
        }
        sample.len = 0;
        put_packed(&sample, SAMPLE_LOCATION_ID, ids, n);

        uint64_t values[3];
        values[0] = c->hits;
        values[1] = (uint64_t)((int64_t)c->hits * opts->interval_ns);
        values[2] = c->cpu_ns;
        put_packed(&sample, SAMPLE_VALUE, values, opts->cpu_mode ? 3 : 2);

        if (c->thread < nthreads) {
            uint64_t name = thread_name[c->thread];
            if (!name) {
                const char *given = opts->thread_names ? opts->thread_names[c->thread] : NULL;
                const oxp_thread_t *t = &threads[c->thread];
                if (given) {
                    name = strtab_cstr(&st, given);
                } else if (t->name != OXP_NO_ID) {
                    name = strtab_db(&st, db, t->name);
                } else {
                    char tmp[32];
                    int len = snprintf(tmp, sizeof(tmp), "Thread-%llu",
                                       (unsigned long long)t->native_id);
                    char *s = malloc((size_t)len + 1);
                    if (s)
                        memcpy(s, tmp, (size_t)len + 1);
                    name = strtab_owned(&st, s);
                }
                thread_name[c->thread] = name + 1;
            } else {
                name -= 1;
            }
            put_label(&sample, k_thread, name, 0);
            put_label(&sample, k_thread_id, 0, threads[c->thread].ident);
        }
        if (c->label != OXP_NO_ID)
            put_label(&sample, k_endpoint, strtab_db(&st, db, c->label), 0);
        /* Samples of a thread that had not run since the previous tick. */
        if (c->idle)
            put_label(&sample, k_state, v_idle, 0);

        if (sample.oom)
            goto done;
        pb_bytes(&buf, PROFILE_SAMPLE, sample.p, sample.len);
    }

    for (size_t i = 0; i < lt.n; i++)
        put_location(&buf, i + 1, (uint64_t)lt.items[i].func + 1, lt.items[i].line);

    for (size_t i = 0; i < nfuncs; i++) {
        const oxp_func_t *f = &funcs[i];
        uint64_t name, system_name;
        function_names(&st, db, f, &name, &system_name);
        uint64_t filename = strtab_db(&st, db, f->filename);
        put_function(&buf, i + 1, name, system_name, filename, f->firstlineno);
    }

    put_value_type(&buf, &st, PROFILE_PERIOD_TYPE, "wall", "nanoseconds");
    pb_uint(&buf, PROFILE_PERIOD, (uint64_t)opts->interval_ns);
    pb_uint(&buf, PROFILE_TIME_NANOS, (uint64_t)opts->time_nanos);
    pb_uint(&buf, PROFILE_DURATION_NANOS, (uint64_t)opts->duration_nanos);

    if (st.oom || lt.oom)
        goto done;
    for (size_t i = 0; i < st.n; i++)
        pb_bytes(&buf, PROFILE_STRING_TABLE, st.items[i].s, st.items[i].len);

    if (buf.oom || pb_reserve(&buf, 1)) /* pb_reserve: a non-NULL result when empty */
        goto done;
    *out = buf.p;
    *out_len = buf.len;
    buf.p = NULL;
    rc = 0;

done:
    free(buf.p);
    free(sample.p);
    free(ids);
    free(thread_name);
    strtab_free(&st);
    loctab_free(&lt);
    return rc;
}
