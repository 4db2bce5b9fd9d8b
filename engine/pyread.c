/* Reading Python objects without the GIL (str, bytes, a module's __name__)
 * through the layout layer and crash-proof reads, and resolving a code
 * object to a database function through the guarded code cache. */
#include "layout/layout.h"

#include <stdlib.h>
#include <string.h>

#include "nogil.h"
#include "saferead.h"

/* Room for a str of OXP_NOGIL_MAX_STR_CHARS code points written as UTF-8,
 * or with lone surrogates written as \udcXX (6 bytes each). */
#define STR_BUF (6 * OXP_NOGIL_MAX_STR_CHARS)

/* Address of the interned "__name__" str (module dicts use that very object
 * as the key).  Set once with the GIL held, before any sampler starts. */
static uintptr_t dunder_name_addr;
static PyObject *dunder_name; /* Owned */

int oxp_nogil_pyread_init(void)
{
    if (dunder_name == NULL) {
        dunder_name = PyUnicode_InternFromString("__name__");
        if (dunder_name == NULL) {
            return -1;
        }
        dunder_name_addr = (uintptr_t)dunder_name;
    }
    return 0;
}

/* Appends code point c to out (cap bytes) as UTF-8, or a lone surrogate as
 * Python's backslashreplace writes it; returns the new length. */
static size_t put_codepoint(char *out, size_t n, size_t cap, uint32_t c)
{
    if (c >= 0xd800 && c <= 0xdfff) {
        if (n + 6 <= cap) {
            static const char hex[] = "0123456789abcdef";
            out[n++] = '\\';
            out[n++] = 'u';
            for (int shift = 12; shift >= 0; shift -= 4) {
                out[n++] = hex[(c >> shift) & 0xf];
            }
        }
    } else if (c < 0x80 && n + 1 <= cap) {
        out[n++] = (char)c;
    } else if (c >= 0x80 && c < 0x800 && n + 2 <= cap) {
        out[n++] = (char)(0xc0 | (c >> 6));
        out[n++] = (char)(0x80 | (c & 0x3f));
    } else if (c >= 0x800 && c < 0x10000 && n + 3 <= cap) {
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

/* Reads the str object at addr into out (STR_BUF bytes) as UTF-8.  Returns
 * the length, or -1 if it is not a readable compact str. */
static long read_str(uintptr_t addr, char *out)
{
    char hdr[OXP_STR_HEADER_SIZE];
    oxp_pystr_t s;
    if (addr == 0 || oxp_saferead(hdr, addr, sizeof(hdr)) < 0 || oxp_layout_str(hdr, &s) < 0) {
        return -1;
    }
    size_t len = s.length > OXP_NOGIL_MAX_STR_CHARS ? OXP_NOGIL_MAX_STR_CHARS : (size_t)s.length;
    unsigned char raw[OXP_NOGIL_MAX_STR_CHARS * 4];
    if (oxp_saferead(raw, addr + s.data, len * s.kind) < 0) {
        return -1;
    }
    if (s.ascii) {
        for (size_t i = 0; i < len; i++) {
            if (raw[i] & 0x80) {
                return -1;
            }
        }
        memcpy(out, raw, len);
        return (long)len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c;
        if (s.kind == 1) {
            c = raw[i];
        } else if (s.kind == 2) {
            uint16_t w;
            memcpy(&w, raw + 2 * i, 2);
            c = w;
        } else {
            memcpy(&c, raw + 4 * i, 4);
        }
        n = put_codepoint(out, n, STR_BUF, c);
    }
    return (long)n;
}

/* Copies a bytes object's contents (the line table).  NULL on failure. */
static uint8_t *read_bytes(uintptr_t addr, uint32_t *len_out)
{
    char hdr[OXP_BYTES_HEADER_SIZE];
    size_t len, data;
    if (addr == 0 || oxp_saferead(hdr, addr, sizeof(hdr)) < 0 || oxp_layout_bytes(hdr, &len, &data) < 0 ||
        len > OXP_NOGIL_MAX_LINETABLE) {
        return NULL;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL || oxp_saferead(copy, addr + data, len) < 0) {
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
    enum { MAX_ENTRIES = 16, MAX_ENTRY_SIZE = 32 };
    char dict[OXP_DICT_SIZE], keys_hdr[OXP_DICTKEYS_HEADER_SIZE];
    uintptr_t keys;
    oxp_pydictkeys_t k;
    if (globals == 0 || oxp_saferead(dict, globals, sizeof(dict)) < 0 || oxp_layout_dict(dict, &keys) < 0 ||
        oxp_saferead(keys_hdr, keys, sizeof(keys_hdr)) < 0 || oxp_layout_dict_keys(keys_hdr, keys, &k) < 0 ||
        k.entry_size > MAX_ENTRY_SIZE) {
        return -1;
    }
    size_t n = k.n < MAX_ENTRIES ? (size_t)k.n : MAX_ENTRIES;
    unsigned char entries[MAX_ENTRIES * MAX_ENTRY_SIZE];
    if (oxp_saferead(entries, k.entries, n * k.entry_size) < 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uintptr_t key, value;
        memcpy(&key, entries + i * k.entry_size + k.key, sizeof(key));
        memcpy(&value, entries + i * k.entry_size + k.value, sizeof(value));
        if (key == dunder_name_addr && value != 0) {
            return read_str(value, out);
        }
    }
    return -1;
}

/* The module of a function object whose code is `code`.  Length, or -1. */
static long read_function_module(uintptr_t func, uintptr_t code, char *out)
{
    char raw[OXP_FUNCTION_SIZE];
    uintptr_t fcode, module;
    if (func == 0 || oxp_saferead(raw, func, sizeof(raw)) < 0 || oxp_layout_function(raw, &fcode, &module) < 0 ||
        fcode != code) {
        return -1;
    }
    return read_str(module, out);
}

static int guard_matches(const oxp_code_entry_t *e, const oxp_pycode_t *c)
{
    return e->g_name == c->name && e->g_qualname == c->qualname && e->g_filename == c->filename &&
           e->g_linetable == c->linetable && e->g_size == c->units && e->g_firstlineno == c->firstlineno;
}

int oxp_nogil_resolve(oxp_sampler_t *s, oxp_db_t *db, uintptr_t code_addr, const oxp_pycode_t *c,
                      uintptr_t func, uintptr_t globals, oxp_code_entry_t **out)
{
    oxp_code_entry_t *e = oxp_codecache_get(&s->cache, code_addr);
    if (e != NULL && e->func != OXP_NO_ID && e->db_generation == db->generation && guard_matches(e, c)) {
        *out = e;
        return 0;
    }
    char name[STR_BUF], qualname[STR_BUF], filename[STR_BUF], module[STR_BUF];
    long name_len = read_str(c->name, name);
    long qual_len = read_str(c->qualname, qualname);
    long file_len = read_str(c->filename, filename);
    if (name_len < 0 || qual_len < 0 || file_len < 0) {
        return -1;
    }
    long mod_len = read_module_name(globals, module);
    if (mod_len < 0) {
        mod_len = read_function_module(func, code_addr, module);
    }
    if (mod_len < 0) {
        module[0] = '?';
        mod_len = 1;
    }
    uint32_t lt_len = 0;
    uint8_t *linetable = read_bytes(c->linetable, &lt_len);
    if (linetable == NULL) {
        return -1;
    }
    oxp_func_t f;
    f.firstlineno = c->firstlineno;
    oxp_id_t id;
    if (oxp_db_intern(db, name, (size_t)name_len, &f.name) < 0 ||
        oxp_db_intern(db, qualname, (size_t)qual_len, &f.qualname) < 0 ||
        oxp_db_intern(db, module, (size_t)mod_len, &f.module) < 0 ||
        oxp_db_intern(db, filename, (size_t)file_len, &f.filename) < 0 || oxp_db_func(db, &f, &id) < 0) {
        free(linetable);
        return -2;
    }
    e = oxp_codecache_slot(&s->cache, code_addr);
    e->g_name = c->name;
    e->g_qualname = c->qualname;
    e->g_filename = c->filename;
    e->g_linetable = c->linetable;
    e->g_size = c->units;
    e->g_firstlineno = c->firstlineno;
    e->func = id;
    e->db_generation = db->generation;
    e->linetable = linetable;
    e->linetable_len = lt_len;
    e->own = (uint8_t)oxp_code_is_own(filename, (size_t)file_len);
    s->stats.cache_misses++;
    *out = e;
    return 0;
}
