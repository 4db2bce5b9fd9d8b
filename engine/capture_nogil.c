/* The GIL-free capture for CPython 3.11: walks the interpreter's thread
 * states and each thread's frame chain through crash-proof reads of our own
 * memory (saferead.c), validates what it reads, and resolves code objects to
 * names and lines through a guarded cache.  Runs on the sampler thread: it
 * never takes the GIL, never allocates a Python object and never raises;
 * what fails is counted in the sampler's statistics. */
#ifdef OXP_HAVE_NOGIL
/* The internal headers need this, and Python.h must see it first. */
#define Py_BUILD_CORE 1
#endif
#include "capture.h"

#ifdef OXP_HAVE_NOGIL

#include <stdlib.h>
#include <string.h>

#include "internal/pycore_dict.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "labels.h"
#include "saferead.h"

#define MAX_THREADS 1024  /* thread states copied per tick */
#define MAX_WALK 4096     /* frames followed per thread */
#define MAX_CHUNKS 16     /* datastack chunks copied per thread */
#define MAX_CHUNK_BYTES ((size_t)1 << 20)
#define MAX_STR_CHARS 1024
#define MAX_LINETABLE ((size_t)1 << 16)
#define CODE_HEADER offsetof(PyCodeObject, co_code_adaptive)

typedef struct {
    uintptr_t frame;
    uintptr_t code;
    uintptr_t prev_instr;
    uintptr_t func;
    uintptr_t globals;
    int owner;
    int32_t live; /* slot in the live-frame table that resolves it, or -1 */
} raw_frame_t;

/* Frames seen at the previous tick, by (frame address, code object,
 * instruction), with what they resolved to.  A frame found again with all
 * three unchanged is the same live frame (or one pushed identically at the
 * same place), which holds its code object alive: it needs no header read.
 * Typically most of a busy thread's stack, all of an idle one's. */
typedef struct {
    uintptr_t frame, code, prev_instr; /* key; frame == 0: empty */
    uint64_t generation; /* database generation of func */
    uint64_t tick;       /* last tick it was seen */
    oxp_id_t func;       /* OXP_NO_ID: the frame is skipped (not started yet) */
    int32_t line;
} live_t;

#define LIVE_SLOTS 16384u
#define LIVE_PROBES 8

/* What a thread's stack looked like and resolved to at its last sample.  A
 * thread whose frames (addresses, code objects, instructions) are all the
 * same at the next tick, typically one blocked in a call, is recorded from
 * this without re-reading its code objects: while its frames live they hold
 * their code objects, so those cannot have been freed and reused. */
typedef struct {
    uint64_t native_id; /* 0 = empty */
    uint64_t hash;      /* of the raw frames */
    uint64_t db_generation;
    uint64_t last_tick;
    uint32_t depth;     /* resolved frames */
    uint32_t cap;
    oxp_frame_t *frames; /* Owned */
} memo_t;

#define MEMO_SLOTS 256

/* Address of the interned "__name__" str (module dicts use that very object
 * as the key).  Set once with the GIL held, before any sampler starts. */
static uintptr_t dunder_name_addr;
static PyObject *dunder_name; /* Owned */

typedef struct {
    uintptr_t addr; /* where the chunk lives */
    size_t len;     /* bytes copied */
    char *copy;
    size_t cap;
} chunk_copy_t;

typedef struct {
    uintptr_t code; /* 0 = empty */
    uint32_t hdr;   /* index into headers (and header_ok) */
} code_slot_t;

/* Scratch owned by one sampler (only its thread touches it). */
typedef struct {
    PyThreadState *tstates; /* copies */
    uintptr_t *tstate_addrs;
    uint64_t *recorded; /* native ids recorded this tick */
    raw_frame_t *raw;
    chunk_copy_t chunks[MAX_CHUNKS];
    size_t raw_cap;     /* frames the arrays below are sized for */
    code_slot_t *slots; /* 2 * raw_cap: dedupes the code objects of a tick */
    char *headers;      /* raw_cap * CODE_HEADER */
    uint8_t *header_ok; /* raw_cap */
    struct iovec *local, *remote; /* raw_cap each */
    /* Per thread of the tick: where its frames start, how many, and how
     * its walk ended. */
    int *walk_first, *walk_n, *walk_truncated;
    uint64_t *walk_cpu;
    /* Per thread: its cframe and current datastack chunk, read for all
     * threads in one batched call. */
    struct prefetch *pre;
    int prev_nthreads; /* length of last tick's thread list (tstate_addrs) */
    memo_t memo[MEMO_SLOTS];
    live_t *live; /* LIVE_SLOTS */
    int *walk_memo;     /* per thread of the tick: memo slot, or -1 */
    uint64_t *walk_hash; /* per thread of the tick: hash of its raw frames */
} nogil_state_t;

typedef struct prefetch {
    _PyCFrame cf;
    int cf_ok;
    int chunk_ok;
    chunk_copy_t chunk; /* Owned buffer, swapped into chunks[0] for the walk */
} prefetch_t;

static void state_free(nogil_state_t *st)
{
    if (st == NULL) {
        return;
    }
    free(st->tstates);
    free(st->tstate_addrs);
    free(st->recorded);
    free(st->raw);
    for (int i = 0; i < MAX_CHUNKS; i++) {
        free(st->chunks[i].copy);
    }
    free(st->slots);
    free(st->headers);
    free(st->header_ok);
    free(st->local);
    free(st->remote);
    free(st->walk_first);
    free(st->walk_n);
    free(st->walk_truncated);
    free(st->walk_cpu);
    if (st->pre != NULL) {
        for (int i = 0; i < MAX_THREADS; i++) {
            free(st->pre[i].chunk.copy);
        }
    }
    free(st->pre);
    for (int i = 0; i < MEMO_SLOTS; i++) {
        free(st->memo[i].frames);
    }
    free(st->walk_memo);
    free(st->walk_hash);
    free(st->live);
    free(st);
}

/* Makes room for `need` raw frames in a tick (and the per-code arrays).
 * 0 / -1. */
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

static int reserve_frames(nogil_state_t *st, size_t need)
{
    if (need <= st->raw_cap) {
        return 0;
    }
    size_t cap = st->raw_cap ? st->raw_cap : MAX_WALK;
    while (cap < need) {
        cap *= 2;
    }
    /* Arrays that grew before a failure stay valid; raw_cap keeps the size
     * all of them have. */
    int failed = 0;
    st->raw = grow(st->raw, cap * sizeof(raw_frame_t), &failed);
    st->slots = grow(st->slots, 2 * cap * sizeof(code_slot_t), &failed);
    st->headers = grow(st->headers, cap * CODE_HEADER, &failed);
    st->header_ok = grow(st->header_ok, cap, &failed);
    st->local = grow(st->local, cap * sizeof(struct iovec), &failed);
    st->remote = grow(st->remote, cap * sizeof(struct iovec), &failed);
    if (failed) {
        return -1;
    }
    st->raw_cap = cap;
    return 0;
}

static nogil_state_t *state_get(oxp_sampler_t *s)
{
    if (s->nogil_state != NULL) {
        return s->nogil_state;
    }
    nogil_state_t *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL;
    }
    st->tstates = malloc(MAX_THREADS * sizeof(PyThreadState));
    st->tstate_addrs = malloc(MAX_THREADS * sizeof(uintptr_t));
    st->recorded = malloc(MAX_THREADS * sizeof(uint64_t));
    st->walk_first = malloc(MAX_THREADS * sizeof(int));
    st->walk_n = malloc(MAX_THREADS * sizeof(int));
    st->walk_truncated = malloc(MAX_THREADS * sizeof(int));
    st->walk_cpu = malloc(MAX_THREADS * sizeof(uint64_t));
    st->pre = calloc(MAX_THREADS, sizeof(prefetch_t));
    st->walk_memo = malloc(MAX_THREADS * sizeof(int));
    st->walk_hash = malloc(MAX_THREADS * sizeof(uint64_t));
    st->live = calloc(LIVE_SLOTS, sizeof(live_t));
    if (!st->live || !st->pre || !st->walk_memo || !st->walk_hash || !st->tstates || !st->tstate_addrs || !st->recorded || !st->walk_first || !st->walk_n ||
        !st->walk_truncated || !st->walk_cpu || reserve_frames(st, MAX_WALK) < 0) {
        state_free(st);
        return NULL;
    }
    s->nogil_state = st;
    return st;
}

void oxp_capture_nogil_free(oxp_sampler_t *s)
{
    state_free(s->nogil_state);
    s->nogil_state = NULL;
}

int oxp_capture_nogil_available(const char **why)
{
    if (dunder_name == NULL) {
        dunder_name = PyUnicode_InternFromString("__name__");
        if (dunder_name == NULL) {
            PyErr_Clear();
            *why = "out of memory";
            return 0;
        }
        dunder_name_addr = (uintptr_t)dunder_name;
    }
    if (oxp_saferead_init() < 0) {
        *why = "neither process_vm_readv nor /proc/self/mem can read this process";
        return 0;
    }
    return 1;
}

/* -- reading objects ------------------------------------------------------ */

/* Appends the UTF-8 of code point c to out (cap bytes), returns new length. */
static size_t put_utf8(char *out, size_t n, size_t cap, uint32_t c)
{
    if (c < 0x80 && n + 1 <= cap) {
        out[n++] = (char)c;
    } else if (c < 0x800 && n + 2 <= cap) {
        out[n++] = (char)(0xc0 | (c >> 6));
        out[n++] = (char)(0x80 | (c & 0x3f));
    } else if (c >= 0x800 && c < 0x10000 && n + 3 <= cap) {
        if (c >= 0xd800 && c <= 0xdfff) {
            c = 0xfffd; /* lone surrogate */
        }
        out[n++] = (char)(0xe0 | (c >> 12));
        out[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[n++] = (char)(0x80 | (c & 0x3f));
    } else if (c >= 0x10000 && c <= 0x10ffff && n + 4 <= cap) {
        out[n++] = (char)(0xf0 | (c >> 18));
        out[n++] = (char)(0x80 | ((c >> 12) & 0x3f));
        out[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[n++] = (char)(0x80 | (c & 0x3f));
    }
    return n;
}

/* Reads a str object at addr as UTF-8 into out (4 * MAX_STR_CHARS bytes).
 * Returns the length, or -1 if it is not a readable compact str. */
static long read_unicode(uintptr_t addr, char *out)
{
    PyCompactUnicodeObject u;
    if (oxp_saferead(&u, addr, sizeof(PyASCIIObject)) < 0) {
        return -1;
    }
    const PyASCIIObject *a = &u._base;
    if (Py_TYPE((PyObject *)a) != &PyUnicode_Type || !a->state.compact || a->length < 0) {
        return -1;
    }
    unsigned kind = a->state.kind;
    if (kind != 1 && kind != 2 && kind != 4) {
        return -1;
    }
    size_t len = (size_t)a->length;
    if (len > MAX_STR_CHARS) {
        len = MAX_STR_CHARS;
    }
    uintptr_t data = addr + (a->state.ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject));
    unsigned char raw[MAX_STR_CHARS * 4];
    if (oxp_saferead(raw, data, len * kind) < 0) {
        return -1;
    }
    if (a->state.ascii) {
        for (size_t i = 0; i < len; i++) {
            if (raw[i] & 0x80) {
                return -1;
            }
        }
        memcpy(out, raw, len);
        return (long)len;
    }
    size_t n = 0, cap = 4 * MAX_STR_CHARS;
    for (size_t i = 0; i < len; i++) {
        uint32_t c;
        if (kind == 1) {
            c = raw[i];
        } else if (kind == 2) {
            uint16_t w;
            memcpy(&w, raw + 2 * i, 2);
            c = w;
        } else {
            memcpy(&c, raw + 4 * i, 4);
        }
        n = put_utf8(out, n, cap, c);
    }
    return (long)n;
}

/* Copies a bytes object's contents (the line table). NULL on failure. */
static uint8_t *read_bytes(uintptr_t addr, uint32_t *len_out)
{
    PyBytesObject b;
    if (oxp_saferead(&b, addr, offsetof(PyBytesObject, ob_sval)) < 0 ||
        Py_TYPE((PyObject *)&b) != &PyBytes_Type || Py_SIZE((PyObject *)&b) < 0 ||
        (size_t)Py_SIZE((PyObject *)&b) > MAX_LINETABLE) {
        return NULL;
    }
    size_t len = (size_t)Py_SIZE((PyObject *)&b);
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL || oxp_saferead(copy, addr + offsetof(PyBytesObject, ob_sval), len) < 0) {
        free(copy);
        return NULL;
    }
    *len_out = (uint32_t)len;
    return copy;
}

/* globals["__name__"] of a module dict, looked for among its first entries
 * (where a module's dict has it).  Length, or -1. */
static long read_module_name(uintptr_t globals, char *out)
{
    enum { MAX_ENTRIES = 16 };
    PyDictObject d;
    if (globals == 0 || oxp_saferead(&d, globals, sizeof(d)) < 0 || Py_TYPE((PyObject *)&d) != &PyDict_Type ||
        d.ma_values != NULL || d.ma_keys == NULL) {
        return -1;
    }
    PyDictKeysObject k;
    uintptr_t keys = (uintptr_t)d.ma_keys;
    if (oxp_saferead(&k, keys, sizeof(k)) < 0 || k.dk_log2_index_bytes > 40 || k.dk_nentries < 0) {
        return -1;
    }
    uintptr_t entries = keys + offsetof(PyDictKeysObject, dk_indices) + ((uintptr_t)1 << k.dk_log2_index_bytes);
    size_t n = k.dk_nentries < MAX_ENTRIES ? (size_t)k.dk_nentries : MAX_ENTRIES;
    uintptr_t value = 0;
    if (k.dk_kind == DICT_KEYS_UNICODE) {
        PyDictUnicodeEntry e[MAX_ENTRIES];
        if (oxp_saferead(e, entries, n * sizeof(e[0])) < 0) {
            return -1;
        }
        for (size_t i = 0; i < n && value == 0; i++) {
            value = (uintptr_t)e[i].me_key == dunder_name_addr ? (uintptr_t)e[i].me_value : 0;
        }
    } else if (k.dk_kind == DICT_KEYS_GENERAL) {
        PyDictKeyEntry e[MAX_ENTRIES];
        if (oxp_saferead(e, entries, n * sizeof(e[0])) < 0) {
            return -1;
        }
        for (size_t i = 0; i < n && value == 0; i++) {
            value = (uintptr_t)e[i].me_key == dunder_name_addr ? (uintptr_t)e[i].me_value : 0;
        }
    }
    return value ? read_unicode(value, out) : -1;
}

static int guard_matches(const oxp_code_entry_t *e, const PyCodeObject *c)
{
    return e->g_name == (uintptr_t)c->co_name && e->g_qualname == (uintptr_t)c->co_qualname &&
           e->g_filename == (uintptr_t)c->co_filename && e->g_linetable == (uintptr_t)c->co_linetable &&
           e->g_size == (int64_t)Py_SIZE((PyObject *)c) && e->g_firstlineno == c->co_firstlineno;
}

/* Fills a cache entry for the code object (header already read and
 * validated) and interns its function.  0, -1 on unreadable memory, -2 when
 * the database is over its cap. */
static int resolve_code(oxp_sampler_t *s, oxp_db_t *db, uintptr_t code_addr, const PyCodeObject *c,
                        uintptr_t func_addr, uintptr_t globals, oxp_code_entry_t **out)
{
    char name[4 * MAX_STR_CHARS], qualname[4 * MAX_STR_CHARS], filename[4 * MAX_STR_CHARS];
    char module[4 * MAX_STR_CHARS];
    long name_len = read_unicode((uintptr_t)c->co_name, name);
    long qual_len = read_unicode((uintptr_t)c->co_qualname, qualname);
    long file_len = read_unicode((uintptr_t)c->co_filename, filename);
    if (name_len < 0 || qual_len < 0 || file_len < 0) {
        return -1;
    }
    long mod_len = read_module_name(globals, module);
    PyFunctionObject fn;
    if (mod_len < 0 && func_addr != 0 && oxp_saferead(&fn, func_addr, sizeof(fn)) == 0 &&
        Py_TYPE((PyObject *)&fn) == &PyFunction_Type && (uintptr_t)fn.func_code == code_addr) {
        mod_len = read_unicode((uintptr_t)fn.func_module, module);
    }
    if (mod_len < 0) {
        module[0] = '?';
        mod_len = 1;
    }
    uint32_t lt_len = 0;
    uint8_t *linetable = read_bytes((uintptr_t)c->co_linetable, &lt_len);
    if (linetable == NULL) {
        return -1;
    }
    oxp_func_t f;
    f.firstlineno = c->co_firstlineno;
    if (oxp_db_intern(db, name, (size_t)name_len, &f.name) < 0 ||
        oxp_db_intern(db, qualname, (size_t)qual_len, &f.qualname) < 0 ||
        oxp_db_intern(db, module, (size_t)mod_len, &f.module) < 0 ||
        oxp_db_intern(db, filename, (size_t)file_len, &f.filename) < 0) {
        free(linetable);
        return -2;
    }
    oxp_id_t id;
    if (oxp_db_func(db, &f, &id) < 0) {
        free(linetable);
        return -2;
    }
    oxp_code_entry_t *e = oxp_codecache_slot(&s->cache, code_addr);
    e->g_name = (uintptr_t)c->co_name;
    e->g_qualname = (uintptr_t)c->co_qualname;
    e->g_filename = (uintptr_t)c->co_filename;
    e->g_linetable = (uintptr_t)c->co_linetable;
    e->g_size = (int64_t)Py_SIZE((PyObject *)c);
    e->g_firstlineno = c->co_firstlineno;
    e->func = id;
    e->db_generation = db->generation;
    e->linetable = linetable;
    e->linetable_len = lt_len;
    s->stats.cache_misses++;
    *out = e;
    return 0;
}

/* -- walking ------------------------------------------------------------- */

/* Room for `used` bytes in a chunk copy.  0 / -1 (out of memory). */
static int chunk_reserve(chunk_copy_t *ch, size_t used)
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

/* A frame from the copied chunks, or read on its own.  0 / -1. */
static int get_frame(nogil_state_t *st, int *nchunks, uintptr_t addr, _PyInterpreterFrame *out)
{
    for (;;) {
        for (int i = 0; i < *nchunks; i++) {
            chunk_copy_t *ch = &st->chunks[i];
            if (ch->len >= sizeof(*out) && addr >= ch->addr && addr - ch->addr <= ch->len - sizeof(*out)) {
                memcpy(out, ch->copy + (addr - ch->addr), sizeof(*out));
                return 0;
            }
        }
        /* Not in what we copied: copy the next older chunk, if any. */
        if (*nchunks == 0 || *nchunks >= MAX_CHUNKS) {
            break;
        }
        const chunk_copy_t *last = &st->chunks[*nchunks - 1];
        if (last->len < sizeof(_PyStackChunk)) {
            break;
        }
        _PyStackChunk hdr;
        memcpy(&hdr, last->copy, sizeof(hdr));
        uintptr_t prev = (uintptr_t)hdr.previous;
        _PyStackChunk phdr;
        if (prev == 0 || oxp_saferead(&phdr, prev, sizeof(phdr)) < 0) {
            break;
        }
        size_t used = offsetof(_PyStackChunk, data) + phdr.top * sizeof(PyObject *);
        if (used > phdr.size || used > MAX_CHUNK_BYTES) {
            break;
        }
        chunk_copy_t *ch = &st->chunks[*nchunks];
        if (chunk_reserve(ch, used) < 0 || oxp_saferead(ch->copy, prev, used) < 0) {
            break;
        }
        ch->addr = prev;
        ch->len = used;
        (*nchunks)++;
    }
    return oxp_saferead(out, addr, sizeof(*out));
}

/* Reads the frame chain of one thread into st->raw, leaf first.  Returns the
 * number of frames, or -1 (unreadable) / -2 (invalid). *truncated is set when
 * the chain was longer than MAX_WALK. */
static int walk_frames(nogil_state_t *st, const PyThreadState *ts, size_t first, int *truncated,
                       const prefetch_t *pre)
{
    _PyCFrame cf;
    int nchunks = 0;
    uintptr_t chunk = (uintptr_t)ts->datastack_chunk;
    uintptr_t top = (uintptr_t)ts->datastack_top;
    size_t used = top > chunk ? (size_t)(top - chunk) : 0;
    if (pre != NULL && pre->cf_ok) {
        /* Read in the batch for all threads; chunks[0] holds its chunk. */
        cf = pre->cf;
        nchunks = pre->chunk_ok ? 1 : 0;
    } else {
        struct iovec local[2], remote[2];
        local[0].iov_base = &cf;
        local[0].iov_len = sizeof(cf);
        remote[0].iov_base = (void *)ts->cframe;
        remote[0].iov_len = sizeof(cf);
        size_t nvec = 1;
        if (chunk != 0 && used > 0 && used <= MAX_CHUNK_BYTES) {
            chunk_copy_t *ch = &st->chunks[0];
            if (chunk_reserve(ch, used) == 0) {
                local[1].iov_base = ch->copy;
                local[1].iov_len = used;
                remote[1].iov_base = (void *)chunk;
                remote[1].iov_len = used;
                nvec = 2;
            }
        }
        size_t got = oxp_safereadv(local, remote, nvec);
        if (got == 0) {
            return -1;
        }
        if (got == 2) {
            st->chunks[0].addr = chunk;
            st->chunks[0].len = used;
            nchunks = 1;
        }
    }
    uintptr_t addr = (uintptr_t)cf.current_frame;
    int n = 0;
    *truncated = 0;
    while (addr != 0) {
        if (n >= MAX_WALK) {
            *truncated = 1;
            break;
        }
        _PyInterpreterFrame f;
        if (get_frame(st, &nchunks, addr, &f) < 0) {
            return -1;
        }
        if (f.owner != FRAME_OWNED_BY_THREAD && f.owner != FRAME_OWNED_BY_GENERATOR) {
            return -2;
        }
        if ((uintptr_t)f.previous == addr || f.f_code == NULL) {
            return -2;
        }
        raw_frame_t *r = &st->raw[first + (size_t)n++];
        r->frame = addr;
        r->code = (uintptr_t)f.f_code;
        r->prev_instr = (uintptr_t)f.prev_instr;
        r->func = (uintptr_t)f.f_func;
        r->globals = (uintptr_t)f.f_globals;
        r->owner = f.owner;
        r->live = -1;
        addr = (uintptr_t)f.previous;
    }
    return n;
}

/* Reads and validates the header of every distinct code object of the walk.
 * Fills st->slots; returns the slot mask. */
static uint32_t read_code_headers(nogil_state_t *st, size_t n)
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
    memset(st->slots, 0, nslots * sizeof(code_slot_t));
    uint32_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        if (st->raw[i].live >= 0) {
            continue; /* resolved at the previous tick: no header needed */
        }
        uintptr_t code = st->raw[i].code;
        uint32_t h = (uint32_t)((code >> 4) * 0x9e3779b1u) & mask;
        while (st->slots[h].code != 0 && st->slots[h].code != code) {
            h = (h + 1) & mask;
        }
        if (st->slots[h].code == 0) {
            st->slots[h].code = code;
            st->slots[h].hdr = nh;
            st->local[nh].iov_base = st->headers + (size_t)nh * CODE_HEADER;
            st->local[nh].iov_len = CODE_HEADER;
            st->remote[nh].iov_base = (void *)code;
            st->remote[nh].iov_len = CODE_HEADER;
            nh++;
        }
    }
    /* Batched reads; a failed segment stops a batch, so resume after it. */
    uint8_t *ok = st->header_ok;
    memset(ok, 0, nh);
    uint32_t pos = 0;
    while (pos < nh) {
        size_t got = oxp_safereadv(st->local + pos, st->remote + pos, nh - pos);
        for (size_t k = 0; k < got; k++) {
            ok[pos + k] = 1;
        }
        pos += (uint32_t)got + 1; /* skip the failed one */
    }
    /* ok[k]: header k was read and looks like a code object. */
    for (uint32_t k = 0; k < nh; k++) {
        const PyCodeObject *c = (const PyCodeObject *)(st->headers + (size_t)k * CODE_HEADER);
        ok[k] = ok[k] && Py_TYPE((const PyObject *)c) == &PyCode_Type && Py_SIZE((const PyObject *)c) > 0 &&
                Py_SIZE((const PyObject *)c) < (1 << 24) && c->co_firstlineno >= 0;
    }
    return mask;
}

static const code_slot_t *find_slot(const nogil_state_t *st, uint32_t mask, uintptr_t code)
{
    uint32_t h = (uint32_t)((code >> 4) * 0x9e3779b1u) & mask;
    while (st->slots[h].code != code) {
        h = (h + 1) & mask;
    }
    return &st->slots[h];
}

static uint32_t live_hash(const raw_frame_t *r)
{
    uint64_t h = (uint64_t)r->frame * 0x9e3779b97f4a7c15ULL;
    h ^= (uint64_t)r->code * 0xff51afd7ed558ccdULL;
    h ^= (uint64_t)r->prev_instr * 0xc4ceb9fe1a85ec53ULL;
    return (uint32_t)(h ^ (h >> 29));
}

/* Marks the frames found unchanged since the previous tick (r->live). */
static void live_mark(nogil_state_t *st, raw_frame_t *raw, int n, uint64_t tick)
{
    for (int i = 0; i < n; i++) {
        raw_frame_t *r = &raw[i];
        uint32_t h = live_hash(r);
        r->live = -1;
        for (uint32_t k = 0; k < LIVE_PROBES; k++) {
            uint32_t slot = (h + k) & (LIVE_SLOTS - 1);
            const live_t *e = &st->live[slot];
            if (e->frame == r->frame && e->code == r->code && e->prev_instr == r->prev_instr) {
                if (e->tick + 1 >= tick) {
                    r->live = (int32_t)slot;
                }
                break;
            }
        }
    }
}

/* Remembers what a frame resolved to (db lock held). */
static void live_store(nogil_state_t *st, const raw_frame_t *r, oxp_id_t func, int32_t line, uint64_t generation,
                       uint64_t tick)
{
    uint32_t h = live_hash(r);
    live_t *victim = NULL;
    for (uint32_t k = 0; k < LIVE_PROBES; k++) {
        live_t *e = &st->live[(h + k) & (LIVE_SLOTS - 1)];
        if ((e->frame == r->frame && e->code == r->code && e->prev_instr == r->prev_instr) || e->frame == 0) {
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
    victim->prev_instr = r->prev_instr;
    victim->generation = generation;
    victim->tick = tick;
    victim->func = func;
    victim->line = line;
}

static uint64_t hash_raw(const raw_frame_t *raw, int n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        uint64_t words[4] = {raw[i].frame, raw[i].code, raw[i].prev_instr, (uint64_t)raw[i].owner};
        for (int k = 0; k < 4; k++) {
            h ^= words[k];
            h *= 0xff51afd7ed558ccdULL;
            h ^= h >> 32;
        }
    }
    return h;
}

/* The memo slot of a thread (creating one, evicting a stale one if needed),
 * or -1. */
static int memo_slot(nogil_state_t *st, uint64_t native_id, uint64_t tick, int create)
{
    uint32_t start = (uint32_t)(native_id * 0x9e3779b1u) % MEMO_SLOTS;
    int empty = -1, stale = -1;
    for (uint32_t k = 0; k < MEMO_SLOTS; k++) {
        int i = (int)((start + k) % MEMO_SLOTS);
        memo_t *m = &st->memo[i];
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

/* Remembers what thread t resolved to (db lock held). */
static void memo_store(nogil_state_t *st, int t, const oxp_frame_t *frames, uint32_t depth, uint64_t generation,
                       uint64_t tick)
{
    int i = memo_slot(st, (uint64_t)st->tstates[t].native_thread_id, tick, 1);
    if (i < 0) {
        return;
    }
    memo_t *m = &st->memo[i];
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
    m->hash = st->walk_hash[t];
    m->db_generation = generation;
    m->last_tick = tick;
}

/* Records one resolved stack of thread `ts` with its label (db lock held). */
static void record_sample(oxp_sampler_t *s, const PyThreadState *ts, const oxp_frame_t *frames, uint32_t depth,
                          int held_gil, uint64_t cpu_ns)
{
    char label[OXP_LABEL_MAX + 1];
    size_t label_len = oxp_labels_get((uint64_t)ts->thread_id, label);
    oxp_sampler_record_unlocked(s, s->db, (uint64_t)ts->thread_id, (uint64_t)ts->native_thread_id, label, label_len,
                                frames, depth, held_gil, cpu_ns);
}

/* Resolves the raw frames of one thread and records them (db lock held).
 * Returns 0, or the drop reason + 1. */
static int record_thread_unlocked(oxp_sampler_t *s, nogil_state_t *st, size_t first, int n, uint32_t mask,
                                  const PyThreadState *ts, int held_gil, uint64_t cpu_ns, int *recorded,
                                  uint32_t *depth_out, uint64_t tick)
{
    *recorded = 0;
    *depth_out = 0;
    oxp_db_t *db = s->db;
    oxp_frame_t *frames = oxp_scratch_frames(&s->scratch, (size_t)n + 1);
    if (frames == NULL) {
        return OXP_DROP_NO_MEMORY + 1;
    }
    uint32_t depth = 0;
    int over = 0;
    for (int i = 0; i < n; i++) {
        const raw_frame_t *r = &st->raw[first + (size_t)i];
        if (r->live >= 0) {
            live_t *e = &st->live[r->live];
            if (e->generation != db->generation) {
                return OXP_DROP_INVALID + 1; /* the database was cleared: retry from scratch */
            }
            e->tick = tick;
            if (e->func != OXP_NO_ID) {
                frames[depth].func = e->func;
                frames[depth].line = e->line;
                depth++;
            }
            continue;
        }
        const code_slot_t *slot = find_slot(st, mask, r->code);
        if (!st->header_ok[slot->hdr]) {
            return OXP_DROP_INVALID + 1;
        }
        const PyCodeObject *c = (const PyCodeObject *)(st->headers + (size_t)slot->hdr * CODE_HEADER);
        intptr_t delta = (intptr_t)(r->prev_instr - (r->code + CODE_HEADER));
        if (delta % (intptr_t)sizeof(_Py_CODEUNIT) != 0) {
            return OXP_DROP_INVALID + 1;
        }
        intptr_t lasti = delta / (intptr_t)sizeof(_Py_CODEUNIT);
        if (lasti < -1 || lasti >= Py_SIZE((const PyObject *)c)) {
            return OXP_DROP_INVALID + 1;
        }
        /* A frame that has not reached its first traceable instruction is
         * not yet visible to Python's own tools either: skip it. */
        if (r->owner != FRAME_OWNED_BY_GENERATOR && lasti < c->_co_firsttraceable) {
            live_store(st, r, OXP_NO_ID, 0, db->generation, tick);
            continue;
        }
        oxp_code_entry_t *e = oxp_codecache_get(&s->cache, r->code);
        if (e == NULL || e->func == OXP_NO_ID || e->db_generation != db->generation || !guard_matches(e, c)) {
            int rc = resolve_code(s, db, r->code, c, r->func, r->globals, &e);
            if (rc == -1) {
                return OXP_DROP_READ + 1;
            }
            if (rc == -2) {
                over = 1;
                continue;
            }
        }
        frames[depth].func = e->func;
        frames[depth].line = oxp_codecache_line(&s->cache, e, (int32_t)lasti);
        live_store(st, r, frames[depth].func, frames[depth].line, db->generation, tick);
        depth++;
    }
    if (depth == 0) {
        return 0; /* a thread between Python frames: nothing to record */
    }
    *recorded = 1;
    if (over) {
        oxp_db_add_overflow(db, held_gil, cpu_ns);
        s->stats.samples++;
        return 0;
    }
    record_sample(s, ts, frames, depth, held_gil, cpu_ns);
    *depth_out = depth;
    return 0;
}

/* Reads every thread's cframe and datastack chunk in one batched call. */
static void prefetch_threads(nogil_state_t *st, int nthreads)
{
    size_t nvec = 0;
    /* local/remote have room for raw_cap >= MAX_WALK >= 2 * MAX_THREADS... only
     * when raw_cap is large enough; otherwise leave the threads to walk_frames. */
    if ((size_t)nthreads * 2 > st->raw_cap) {
        for (int t = 0; t < nthreads; t++) {
            st->pre[t].cf_ok = st->pre[t].chunk_ok = 0;
        }
        return;
    }
    for (int t = 0; t < nthreads; t++) {
        prefetch_t *p = &st->pre[t];
        const PyThreadState *ts = &st->tstates[t];
        p->cf_ok = p->chunk_ok = 0;
        if (ts->thread_id == 0 || ts->cframe == NULL) {
            continue;
        }
        st->local[nvec].iov_base = &p->cf;
        st->local[nvec].iov_len = sizeof(p->cf);
        st->remote[nvec].iov_base = (void *)ts->cframe;
        st->remote[nvec].iov_len = sizeof(p->cf);
        nvec++;
        uintptr_t chunk = (uintptr_t)ts->datastack_chunk, top = (uintptr_t)ts->datastack_top;
        size_t used = top > chunk ? (size_t)(top - chunk) : 0;
        p->chunk.addr = chunk;
        p->chunk.len = 0;
        if (chunk != 0 && used > 0 && used <= MAX_CHUNK_BYTES) {
            if (chunk_reserve(&p->chunk, used) == 0) {
                p->chunk.len = used;
                st->local[nvec].iov_base = p->chunk.copy;
                st->local[nvec].iov_len = used;
                st->remote[nvec].iov_base = (void *)chunk;
                st->remote[nvec].iov_len = used;
                nvec++;
            }
        }
    }
    /* Read in batches, resuming after a segment that fails. */
    uint8_t *ok = st->header_ok; /* free until the header pass */
    memset(ok, 0, nvec);
    size_t pos = 0;
    while (pos < nvec) {
        size_t got = oxp_safereadv(st->local + pos, st->remote + pos, nvec - pos);
        for (size_t k = 0; k < got; k++) {
            ok[pos + k] = 1;
        }
        pos += got + 1;
    }
    /* Hand the results to the threads, in the same order as above. */
    size_t v = 0;
    for (int t = 0; t < nthreads; t++) {
        prefetch_t *p = &st->pre[t];
        const PyThreadState *ts = &st->tstates[t];
        if (ts->thread_id == 0 || ts->cframe == NULL) {
            continue;
        }
        p->cf_ok = ok[v++];
        if (p->chunk.len > 0) {
            p->chunk_ok = p->cf_ok && ok[v];
            v++;
        }
    }
}

/* Walks thread t with its prefetched cframe and chunk (see walk_frames). */
static int walk_thread(nogil_state_t *st, int t, size_t first, int *truncated)
{
    prefetch_t *p = &st->pre[t];
    if (!p->cf_ok) {
        return walk_frames(st, &st->tstates[t], first, truncated, NULL);
    }
    chunk_copy_t saved = st->chunks[0];
    if (p->chunk_ok) {
        st->chunks[0] = p->chunk;
    }
    int n = walk_frames(st, &st->tstates[t], first, truncated, p);
    if (p->chunk_ok) {
        p->chunk = st->chunks[0]; /* walk_frames may not realloc chunks[0], but keep ownership exact */
        st->chunks[0] = saved;
    }
    return n;
}

/* Copies the list head and the thread states at last tick's addresses in
 * one batched read, and keeps them if the list has not changed since.
 * Returns how many, or -1. */
static int copy_thread_list_batched(oxp_sampler_t *s, nogil_state_t *st, uintptr_t head_addr)
{
    int n = st->prev_nthreads;
    if (n <= 0 || n > MAX_THREADS || (size_t)n + 1 > st->raw_cap) {
        return -1;
    }
    uintptr_t head = 0;
    st->local[0].iov_base = &head;
    st->local[0].iov_len = sizeof(head);
    st->remote[0].iov_base = (void *)head_addr;
    st->remote[0].iov_len = sizeof(head);
    for (int i = 0; i < n; i++) {
        st->local[i + 1].iov_base = &st->tstates[i];
        st->local[i + 1].iov_len = sizeof(PyThreadState);
        st->remote[i + 1].iov_base = (void *)st->tstate_addrs[i];
        st->remote[i + 1].iov_len = sizeof(PyThreadState);
    }
    if (oxp_safereadv(st->local, st->remote, (size_t)n + 1) != (size_t)n + 1 || head != st->tstate_addrs[0]) {
        return -1;
    }
    /* The links must still say what they said: same order, same end. */
    for (int i = 0; i < n; i++) {
        uintptr_t next = i + 1 < n ? st->tstate_addrs[i + 1] : 0;
        if ((uintptr_t)st->tstates[i].interp != (uintptr_t)s->interp || (uintptr_t)st->tstates[i].next != next) {
            return -1;
        }
    }
    return n;
}

/* Copies the thread states of the interpreter (lock-free; tolerant of a
 * list that changes under us).  Returns how many, or -1. */
static int copy_thread_list(oxp_sampler_t *s, nogil_state_t *st)
{
    uintptr_t head_addr = (uintptr_t)s->interp + offsetof(PyInterpreterState, threads.head);
    int n = copy_thread_list_batched(s, st, head_addr);
    if (n > 0) {
        return n;
    }
    uintptr_t addr;
    if (oxp_saferead(&addr, head_addr, sizeof(addr)) < 0) {
        return -1;
    }
    n = 0;
    while (addr != 0) {
        if (n >= MAX_THREADS) {
            return -1;
        }
        for (int k = 0; k < n; k++) {
            if (st->tstate_addrs[k] == addr) {
                return -1; /* cycle */
            }
        }
        PyThreadState *ts = &st->tstates[n];
        if (oxp_saferead(ts, addr, sizeof(*ts)) < 0 || (uintptr_t)ts->interp != (uintptr_t)s->interp) {
            return n; /* the rest of the list went away under us */
        }
        st->tstate_addrs[n++] = addr;
        addr = (uintptr_t)ts->next;
    }
    return n;
}

void oxp_capture_nogil_tick(oxp_sampler_t *s, uint64_t tick)
{
    oxp_db_t *db = s->db;
    if (_Py_atomic_load_relaxed(&_PyRuntime._finalizing) != 0) {
        return;
    }
    oxp_saferead_tick();
    nogil_state_t *st = state_get(s);
    if (st == NULL) {
        pthread_mutex_lock(&db->lock);
        s->stats.dropped[OXP_DROP_NO_MEMORY]++;
        pthread_mutex_unlock(&db->lock);
        return;
    }
    int nthreads = copy_thread_list(s, st);
    st->prev_nthreads = nthreads;
    if (nthreads < 0) {
        pthread_mutex_lock(&db->lock);
        s->stats.dropped[OXP_DROP_THREADS]++;
        pthread_mutex_unlock(&db->lock);
        return;
    }
    uintptr_t holder = 0;
    if (_Py_atomic_load_relaxed(&_PyRuntime.ceval.gil.locked)) {
        holder = (uintptr_t)_Py_atomic_load_relaxed(&_PyRuntime.gilstate.tstate_current);
    }
    /* Pass 1, no lock: walk every thread into one array of raw frames. */
    prefetch_threads(st, nthreads);
    size_t total = 0;
    for (int t = 0; t < nthreads; t++) {
        const PyThreadState *ts = &st->tstates[t];
        st->walk_n[t] = 0;
        st->walk_first[t] = (int)total;
        st->walk_truncated[t] = 0;
        st->walk_cpu[t] = 0;
        if (ts->thread_id == 0 || ts->cframe == NULL) {
            continue; /* starting or ending */
        }
        if (s->mode == OXP_MODE_CPU) {
            st->walk_cpu[t] = oxp_sampler_cpu_delta(s, ts->native_thread_id, tick);
            if (st->walk_cpu[t] == 0) {
                st->walk_n[t] = -3; /* idle */
                continue;
            }
        }
        if (reserve_frames(st, total + MAX_WALK) < 0) {
            st->walk_n[t] = -4;
            continue;
        }
        st->walk_n[t] = walk_thread(st, t, total, &st->walk_truncated[t]);
        st->walk_memo[t] = -1;
        if (st->walk_n[t] > 0) {
            st->walk_hash[t] = hash_raw(st->raw + total, st->walk_n[t]);
            int slot = memo_slot(st, (uint64_t)ts->native_thread_id, tick, 0);
            if (slot >= 0 && st->memo[slot].hash == st->walk_hash[t] && st->memo[slot].depth > 0 &&
                !st->walk_truncated[t]) {
                st->walk_memo[t] = slot; /* unchanged: its frames need no header reads */
                continue;
            }
            live_mark(st, st->raw + total, st->walk_n[t], tick);
            total += (size_t)st->walk_n[t];
        }
    }
    /* Pass 2: one batched read of every distinct code object's header. */
    uint32_t mask = total > 0 ? read_code_headers(st, total) : 0;

    /* Pass 3, under the database lock: resolve and record. */
    int nrecorded = 0, nretry = 0;
    int *retry = st->walk_truncated; /* reused below for threads to retry */
    pthread_mutex_lock(&db->lock);
    for (int t = 0; t < nthreads; t++) {
        const PyThreadState *ts = &st->tstates[t];
        int n = st->walk_n[t];
        if (n == 0) {
            continue;
        }
        if (n == -3) {
            s->stats.idle_skipped++;
            continue;
        }
        if (n == -4) {
            s->stats.dropped[OXP_DROP_NO_MEMORY]++;
            continue;
        }
        /* A new thread's tstate carries its creator's ids until the thread
         * runs, and sits before it in the list: it has no frames, records
         * nothing, and must not hide the creator's real tstate. */
        int dup = 0;
        for (int k = 0; k < nrecorded; k++) {
            dup |= st->recorded[k] == (uint64_t)ts->native_thread_id;
        }
        if (dup) {
            continue;
        }
        int drop = n == -1 ? OXP_DROP_READ + 1 : (n == -2 ? OXP_DROP_INVALID + 1 : 0);
        int held = holder == st->tstate_addrs[t];
        if (n > 0 && st->walk_memo[t] >= 0) {
            memo_t *m = &st->memo[st->walk_memo[t]];
            if (m->db_generation == db->generation) {
                record_sample(s, ts, m->frames, m->depth, held, st->walk_cpu[t]);
                m->last_tick = tick;
                s->stats.memo_hits++;
                st->recorded[nrecorded++] = (uint64_t)ts->native_thread_id;
                continue;
            }
            drop = OXP_DROP_INVALID + 1; /* the database was cleared: resolve afresh below */
            m->hash = 0;
        } else if (n > 0) {
            int recorded = 0;
            uint32_t depth = 0;
            drop = record_thread_unlocked(s, st, (size_t)st->walk_first[t], n, mask, ts, held, st->walk_cpu[t],
                                          &recorded, &depth, tick);
            if (recorded) {
                st->recorded[nrecorded++] = (uint64_t)ts->native_thread_id;
                if (depth > 0 && !st->walk_truncated[t]) {
                    memo_store(st, t, s->scratch.frames, depth, db->generation, tick);
                }
            }
        }
        if (drop) {
            /* The thread moved while we read it: retry it alone below. */
            s->stats.retried++;
            retry[nretry++] = t;
        }
    }
    pthread_mutex_unlock(&db->lock);

    /* Retries: one more walk from a fresh copy of the thread state. */
    for (int i = 0; i < nretry; i++) {
        int t = retry[i];
        PyThreadState *ts = &st->tstates[t];
        if (oxp_saferead(ts, st->tstate_addrs[t], sizeof(*ts)) < 0 ||
            (uintptr_t)ts->interp != (uintptr_t)s->interp || ts->cframe == NULL) {
            continue; /* the thread is gone: nothing to drop */
        }
        int truncated = 0;
        int n = walk_frames(st, ts, 0, &truncated, NULL);
        int drop = n == -1 ? OXP_DROP_READ + 1 : (n == -2 ? OXP_DROP_INVALID + 1 : 0);
        uint32_t m = n > 0 ? read_code_headers(st, (size_t)n) : 0;
        pthread_mutex_lock(&db->lock);
        if (n > 0) {
            int recorded = 0;
            uint32_t depth = 0;
            drop = record_thread_unlocked(s, st, 0, n, m, ts, holder == st->tstate_addrs[t], st->walk_cpu[t],
                                          &recorded, &depth, tick);
        }
        if (drop) {
            s->stats.dropped[drop - 1]++;
        }
        pthread_mutex_unlock(&db->lock);
    }
}

#else /* !OXP_HAVE_NOGIL */

int oxp_capture_nogil_available(const char **why)
{
    *why = "this build has no GIL-free capture (it needs CPython 3.11 on Linux with the internal headers)";
    return 0;
}

void oxp_capture_nogil_tick(oxp_sampler_t *s, uint64_t tick)
{
    (void)tick;
    pthread_mutex_lock(&s->db->lock);
    s->stats.dropped[OXP_DROP_INVALID]++;
    pthread_mutex_unlock(&s->db->lock);
}

void oxp_capture_nogil_free(oxp_sampler_t *s) { (void)s; }

#endif
