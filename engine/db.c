/* The profile database: see db.h.  Every allocation is charged to the
 * database's byte budget before it is made, so memory stays under the cap. */
#include "db.h"

#include <stdlib.h>
#include <string.h>

#define OXP_INITIAL_SLOTS 256u

/* Grows vec to hold at least `need` elements of `size` bytes, within budget. */
static int vec_reserve(oxp_db_t *db, oxp_vec_t *vec, size_t size, size_t need)
{
    if (need <= vec->cap) {
        return 0;
    }
    size_t cap = vec->cap ? vec->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    size_t extra = (cap - vec->cap) * size;
    if (db->bytes + extra > db->cap_bytes) {
        /* Try the exact need before giving up. */
        cap = need;
        extra = (cap - vec->cap) * size;
        if (db->bytes + extra > db->cap_bytes) {
            return -1;
        }
    }
    void *data = realloc(vec->data, cap * size);
    if (data == NULL) {
        return -1;
    }
    vec->data = data;
    vec->cap = cap;
    db->bytes += extra;
    return 0;
}

static int index_reserve(oxp_db_t *db, oxp_index_t *ix)
{
    if (!oxp_index_needs_grow(ix)) {
        return 0;
    }
    uint32_t capacity = ix->mask ? (ix->mask + 1) * 2 : OXP_INITIAL_SLOTS;
    if (capacity == 0) {
        return -1;
    }
    size_t old = oxp_index_bytes(ix);
    size_t extra = (size_t)capacity * sizeof(uint64_t) - old;
    if (db->bytes + extra > db->cap_bytes) {
        return -1;
    }
    if (oxp_index_resize(ix, capacity) < 0) {
        return -1;
    }
    db->bytes += extra;
    return 0;
}

int oxp_db_init(oxp_db_t *db, size_t cap_bytes)
{
    memset(db, 0, sizeof(*db));
    if (pthread_mutex_init(&db->lock, NULL) != 0) {
        return -1;
    }
    db->cap_bytes = cap_bytes < OXP_DB_MIN_CAP ? OXP_DB_MIN_CAP : cap_bytes;
    return 0;
}

static void free_tables(oxp_db_t *db)
{
    oxp_vec_t *vecs[] = {&db->chars, &db->str_off, &db->funcs, &db->frames,
                         &db->stacks, &db->threads, &db->counts};
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        free(vecs[i]->data);
        memset(vecs[i], 0, sizeof(*vecs[i]));
    }
    oxp_index_t *ixs[] = {&db->str_index, &db->func_index, &db->stack_index, &db->thread_index,
                          &db->count_index};
    for (size_t i = 0; i < sizeof(ixs) / sizeof(ixs[0]); i++) {
        oxp_index_free(ixs[i]);
    }
    db->bytes = 0;
}

void oxp_db_free(oxp_db_t *db)
{
    free_tables(db);
    pthread_mutex_destroy(&db->lock);
}

void oxp_db_clear(oxp_db_t *db)
{
    free_tables(db);
    db->overflow_hits = db->overflow_gil_hits = db->overflow_cpu_ns = 0;
    db->total_hits = 0;
    db->generation++;
}

static int vec_copy(oxp_vec_t *dst, const oxp_vec_t *src, size_t size)
{
    dst->len = dst->cap = src->len;
    dst->data = NULL;
    if (src->len == 0) {
        return 0;
    }
    dst->data = malloc(src->len * size);
    if (dst->data == NULL) {
        return -1;
    }
    memcpy(dst->data, src->data, src->len * size);
    return 0;
}

static int index_copy(oxp_index_t *dst, const oxp_index_t *src)
{
    *dst = *src;
    dst->slots = NULL;
    if (src->mask == 0) {
        return 0;
    }
    dst->slots = malloc(oxp_index_bytes(src));
    if (dst->slots == NULL) {
        return -1;
    }
    memcpy(dst->slots, src->slots, oxp_index_bytes(src));
    return 0;
}

int oxp_db_copy(oxp_db_t *dst, const oxp_db_t *src)
{
    if (oxp_db_init(dst, src->cap_bytes) < 0) {
        return -1;
    }
    /* Scalars first, then every table; on failure free what was copied. */
    dst->overflow_hits = src->overflow_hits;
    dst->overflow_gil_hits = src->overflow_gil_hits;
    dst->overflow_cpu_ns = src->overflow_cpu_ns;
    dst->total_hits = src->total_hits;
    dst->generation = src->generation;
    if (vec_copy(&dst->chars, &src->chars, 1) < 0 ||
        vec_copy(&dst->str_off, &src->str_off, sizeof(uint32_t)) < 0 ||
        vec_copy(&dst->funcs, &src->funcs, sizeof(oxp_func_t)) < 0 ||
        vec_copy(&dst->frames, &src->frames, sizeof(oxp_frame_t)) < 0 ||
        vec_copy(&dst->stacks, &src->stacks, sizeof(oxp_stack_t)) < 0 ||
        vec_copy(&dst->threads, &src->threads, sizeof(oxp_thread_t)) < 0 ||
        vec_copy(&dst->counts, &src->counts, sizeof(oxp_count_t)) < 0 ||
        index_copy(&dst->str_index, &src->str_index) < 0 ||
        index_copy(&dst->func_index, &src->func_index) < 0 ||
        index_copy(&dst->stack_index, &src->stack_index) < 0 ||
        index_copy(&dst->thread_index, &src->thread_index) < 0 ||
        index_copy(&dst->count_index, &src->count_index) < 0) {
        oxp_db_free(dst);
        return -1;
    }
    dst->bytes = src->bytes;
    return 0;
}

/* -- strings ------------------------------------------------------------- */

typedef struct {
    const oxp_db_t *db;
    const char *s;
    size_t len;
} str_key_t;

static int str_eq(const void *ctx, uint32_t id)
{
    const str_key_t *k = ctx;
    const char *have = oxp_db_str(k->db, id);
    return strncmp(have, k->s, k->len) == 0 && have[k->len] == '\0';
}

const char *oxp_db_str(const oxp_db_t *db, oxp_id_t id)
{
    if (id == OXP_NO_ID || id >= db->str_off.len) {
        return "";
    }
    return (const char *)db->chars.data + ((const uint32_t *)db->str_off.data)[id];
}

int oxp_db_intern(oxp_db_t *db, const char *s, size_t len, oxp_id_t *out)
{
    /* Embedded NULs would make two different strings compare equal. */
    const char *nul = memchr(s, '\0', len);
    if (nul != NULL) {
        len = (size_t)(nul - s);
    }
    uint32_t hash = oxp_hash_bytes(s, len, 0x5157u);
    str_key_t key = {db, s, len};
    uint32_t id = oxp_index_find(&db->str_index, hash, str_eq, &key);
    if (id != UINT32_MAX) {
        *out = id;
        return 0;
    }
    size_t n = db->str_off.len;
    if (db->chars.len + len + 1 > UINT32_MAX || n >= OXP_NO_ID - 1) {
        return -1;
    }
    if (vec_reserve(db, &db->chars, 1, db->chars.len + len + 1) < 0 ||
        vec_reserve(db, &db->str_off, sizeof(uint32_t), n + 1) < 0 ||
        index_reserve(db, &db->str_index) < 0) {
        return -1;
    }
    char *dst = (char *)db->chars.data + db->chars.len;
    memcpy(dst, s, len);
    dst[len] = '\0';
    ((uint32_t *)db->str_off.data)[n] = (uint32_t)db->chars.len;
    db->chars.len += len + 1;
    db->str_off.len = n + 1;
    oxp_index_put(&db->str_index, hash, (uint32_t)n);
    *out = (oxp_id_t)n;
    return 0;
}

/* -- functions ----------------------------------------------------------- */

typedef struct {
    const oxp_db_t *db;
    const oxp_func_t *f;
} func_key_t;

static int func_eq(const void *ctx, uint32_t id)
{
    const func_key_t *k = ctx;
    const oxp_func_t *have = &oxp_db_funcs(k->db)[id];
    return have->name == k->f->name && have->qualname == k->f->qualname &&
           have->module == k->f->module && have->filename == k->f->filename &&
           have->firstlineno == k->f->firstlineno;
}

static uint32_t func_hash(const oxp_func_t *f)
{
    uint32_t h = 0x7a11u;
    h = oxp_hash_mix(h, f->name);
    h = oxp_hash_mix(h, f->qualname);
    h = oxp_hash_mix(h, f->module);
    h = oxp_hash_mix(h, f->filename);
    h = oxp_hash_mix(h, (uint32_t)f->firstlineno);
    return oxp_hash_final(h);
}

int oxp_db_func(oxp_db_t *db, const oxp_func_t *f, oxp_id_t *out)
{
    uint32_t hash = func_hash(f);
    func_key_t key = {db, f};
    uint32_t id = oxp_index_find(&db->func_index, hash, func_eq, &key);
    if (id != UINT32_MAX) {
        *out = id;
        return 0;
    }
    size_t n = db->funcs.len;
    if (n >= OXP_NO_ID - 1 || vec_reserve(db, &db->funcs, sizeof(oxp_func_t), n + 1) < 0 ||
        index_reserve(db, &db->func_index) < 0) {
        return -1;
    }
    ((oxp_func_t *)db->funcs.data)[n] = *f;
    db->funcs.len = n + 1;
    oxp_index_put(&db->func_index, hash, (uint32_t)n);
    *out = (oxp_id_t)n;
    return 0;
}

/* -- stacks -------------------------------------------------------------- */

typedef struct {
    const oxp_db_t *db;
    const oxp_frame_t *frames;
    uint32_t depth;
} stack_key_t;

static int stack_eq(const void *ctx, uint32_t id)
{
    const stack_key_t *k = ctx;
    const oxp_stack_t *st = &oxp_db_stacks(k->db)[id];
    return st->depth == k->depth &&
           memcmp(oxp_db_frames(k->db) + st->offset, k->frames, k->depth * sizeof(oxp_frame_t)) == 0;
}

int oxp_db_stack(oxp_db_t *db, const oxp_frame_t *frames, uint32_t depth, oxp_id_t *out)
{
    uint32_t hash = oxp_hash_bytes(frames, depth * sizeof(oxp_frame_t), 0x57acu);
    stack_key_t key = {db, frames, depth};
    uint32_t id = oxp_index_find(&db->stack_index, hash, stack_eq, &key);
    if (id != UINT32_MAX) {
        *out = id;
        return 0;
    }
    size_t n = db->stacks.len;
    size_t off = db->frames.len;
    if (n >= OXP_NO_ID - 1 || off + depth > UINT32_MAX ||
        vec_reserve(db, &db->frames, sizeof(oxp_frame_t), off + depth) < 0 ||
        vec_reserve(db, &db->stacks, sizeof(oxp_stack_t), n + 1) < 0 ||
        index_reserve(db, &db->stack_index) < 0) {
        return -1;
    }
    if (depth) {
        memcpy((oxp_frame_t *)db->frames.data + off, frames, depth * sizeof(oxp_frame_t));
    }
    db->frames.len = off + depth;
    oxp_stack_t *st = (oxp_stack_t *)db->stacks.data + n;
    st->offset = (uint32_t)off;
    st->depth = depth;
    db->stacks.len = n + 1;
    oxp_index_put(&db->stack_index, hash, (uint32_t)n);
    *out = (oxp_id_t)n;
    return 0;
}

/* -- threads ------------------------------------------------------------- */

typedef struct {
    const oxp_db_t *db;
    uint64_t ident, native_id;
    oxp_id_t process;
} thread_key_t;

static int thread_eq(const void *ctx, uint32_t id)
{
    const thread_key_t *k = ctx;
    const oxp_thread_t *t = &oxp_db_threads(k->db)[id];
    return t->ident == k->ident && t->native_id == k->native_id && t->process == k->process;
}

int oxp_db_thread_in(oxp_db_t *db, oxp_id_t process, uint64_t ident, uint64_t native_id, oxp_id_t *out)
{
    uint64_t words[3] = {ident, native_id, process};
    /* A plain (unmerged) database hashes as it always did. */
    uint32_t hash = oxp_hash_bytes(words, process == OXP_NO_ID ? 2 * sizeof(uint64_t) : sizeof(words), 0x7eadu);
    thread_key_t key = {db, ident, native_id, process};
    uint32_t id = oxp_index_find(&db->thread_index, hash, thread_eq, &key);
    if (id != UINT32_MAX) {
        *out = id;
        return 0;
    }
    size_t n = db->threads.len;
    if (n >= OXP_NO_ID - 1 || vec_reserve(db, &db->threads, sizeof(oxp_thread_t), n + 1) < 0 ||
        index_reserve(db, &db->thread_index) < 0) {
        return -1;
    }
    oxp_thread_t *t = (oxp_thread_t *)db->threads.data + n;
    t->ident = ident;
    t->native_id = native_id;
    t->name = OXP_NO_ID;
    t->process = process;
    db->threads.len = n + 1;
    oxp_index_put(&db->thread_index, hash, (uint32_t)n);
    *out = (oxp_id_t)n;
    return 0;
}

int oxp_db_thread(oxp_db_t *db, uint64_t ident, uint64_t native_id, oxp_id_t *out)
{
    return oxp_db_thread_in(db, OXP_NO_ID, ident, native_id, out);
}

int oxp_db_thread_set_name(oxp_db_t *db, oxp_id_t thread, const char *name, size_t len)
{
    oxp_id_t sid;
    if (thread >= db->threads.len || oxp_db_intern(db, name, len, &sid) < 0) {
        return -1;
    }
    ((oxp_thread_t *)db->threads.data)[thread].name = sid;
    return 0;
}

/* -- counts -------------------------------------------------------------- */

typedef struct {
    const oxp_db_t *db;
    oxp_id_t thread, label, stack;
    uint8_t idle;
} count_key_t;

static int count_eq(const void *ctx, uint32_t id)
{
    const count_key_t *k = ctx;
    const oxp_count_t *c = &oxp_db_counts(k->db)[id];
    return c->stack == k->stack && c->thread == k->thread && c->label == k->label && c->idle == k->idle;
}

/* The row for (thread, label, stack, idle), created if needed; NULL when over budget. */
static oxp_count_t *count_row(oxp_db_t *db, oxp_id_t thread, oxp_id_t label, oxp_id_t stack, int idle)
{
    uint8_t flag = idle ? 1 : 0;
    uint32_t hash =
        oxp_hash_final(oxp_hash_mix(oxp_hash_mix(oxp_hash_mix(oxp_hash_mix(0xc0u, thread), label), stack), flag));
    count_key_t key = {db, thread, label, stack, flag};
    uint32_t id = oxp_index_find(&db->count_index, hash, count_eq, &key);
    if (id != UINT32_MAX) {
        return (oxp_count_t *)db->counts.data + id;
    }
    size_t n = db->counts.len;
    if (n >= OXP_NO_ID - 1 || vec_reserve(db, &db->counts, sizeof(oxp_count_t), n + 1) < 0 ||
        index_reserve(db, &db->count_index) < 0) {
        return NULL;
    }
    oxp_count_t *c = (oxp_count_t *)db->counts.data + n;
    memset(c, 0, sizeof(*c));
    c->thread = thread;
    c->label = label;
    c->stack = stack;
    c->idle = flag;
    db->counts.len = n + 1;
    oxp_index_put(&db->count_index, hash, (uint32_t)n);
    return c;
}

int oxp_db_add_count(oxp_db_t *db, oxp_id_t thread, oxp_id_t label, oxp_id_t stack, int idle, uint64_t hits,
                     uint64_t gil_hits, uint64_t cpu_ns)
{
    if (thread >= db->threads.len || stack >= db->stacks.len ||
        (label != OXP_NO_ID && label >= db->str_off.len)) {
        return -1;
    }
    oxp_count_t *c = count_row(db, thread, label, stack, idle);
    db->total_hits += hits;
    if (c == NULL) {
        db->overflow_hits += hits;
        db->overflow_gil_hits += gil_hits;
        db->overflow_cpu_ns += cpu_ns;
        return 0;
    }
    c->hits += hits;
    c->gil_hits += gil_hits;
    c->cpu_ns += cpu_ns;
    return 0;
}

void oxp_db_add_overflow(oxp_db_t *db, const oxp_sample_info_t *info)
{
    db->total_hits++;
    db->overflow_hits++;
    db->overflow_gil_hits += info->held_gil ? 1 : 0;
    db->overflow_cpu_ns += info->cpu_ns;
}

int oxp_db_add_sample(oxp_db_t *db, oxp_id_t thread, oxp_id_t label, const oxp_frame_t *frames,
                      uint32_t depth, const oxp_sample_info_t *info)
{
    oxp_id_t stack;
    oxp_count_t *c = NULL;
    if (depth > OXP_MAX_DEPTH) {
        depth = OXP_MAX_DEPTH; /* leaf first: keep the leaf-most frames */
    }
    if (oxp_db_stack(db, frames, depth, &stack) == 0) {
        c = count_row(db, thread, label, stack, info->idle);
    }
    if (c == NULL) {
        oxp_db_add_overflow(db, info);
        return 0;
    }
    db->total_hits++;
    c->hits++;
    c->gil_hits += info->held_gil ? 1 : 0;
    c->cpu_ns += info->cpu_ns;
    return 0;
}
