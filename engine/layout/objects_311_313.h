/* Object layouts that CPython 3.11, 3.12 and 3.13 share: code-object header,
 * data-stack chunk, str, bytes, dict and function.  Included by those
 * families' headers; a family where one of these changes gets its own copy.
 * Sources: CPython's Include/cpython/code.h (PyCodeObject, _PyCode_CODE),
 * Include/cpython/pystate.h (_PyStackChunk), Include/cpython/unicodeobject.h
 * (PyASCIIObject, PyCompactUnicodeObject: the data of a compact str follows
 * the first if it is ASCII, else the second), Include/cpython/bytesobject.h,
 * Include/internal/pycore_dict.h (PyDictKeysObject, DK_ENTRIES: entries
 * follow the 1 << dk_log2_index_bytes index bytes) and
 * Include/cpython/funcobject.h, of each version. */
#ifndef OXP_LAYOUT_OBJECTS_311_313_H
#define OXP_LAYOUT_OBJECTS_311_313_H

#include <string.h>

#include "internal/pycore_dict.h"

#define OXP_CODE_HEADER_SIZE offsetof(PyCodeObject, co_code_adaptive)
#define OXP_CODE_UNIT_SIZE sizeof(_Py_CODEUNIT)
#define OXP_CHUNK_HEADER_SIZE offsetof(_PyStackChunk, data)
#define OXP_STR_HEADER_SIZE sizeof(PyASCIIObject)
#define OXP_BYTES_HEADER_SIZE offsetof(PyBytesObject, ob_sval)
#define OXP_DICT_SIZE sizeof(PyDictObject)
#define OXP_DICTKEYS_HEADER_SIZE offsetof(PyDictKeysObject, dk_indices)
#define OXP_FUNCTION_SIZE sizeof(PyFunctionObject)

/* Bytecode longer than this is taken for a torn read. */
#define OXP_LAYOUT_MAX_UNITS (1 << 24)

static inline int oxp_layout_code(const void *raw, uintptr_t addr, oxp_pycode_t *out)
{
    const PyCodeObject *c = (const PyCodeObject *)raw;
    /* In-process, the code type's address is known: a cheap, strong check. */
    if (Py_TYPE((const PyObject *)c) != &PyCode_Type || Py_SIZE((const PyObject *)c) <= 0 ||
        Py_SIZE((const PyObject *)c) >= OXP_LAYOUT_MAX_UNITS || c->co_firstlineno < 0 ||
        c->_co_firsttraceable < 0) {
        return -1;
    }
    out->name = (uintptr_t)c->co_name;
    out->qualname = (uintptr_t)c->co_qualname;
    out->filename = (uintptr_t)c->co_filename;
    out->linetable = (uintptr_t)c->co_linetable;
    out->units = (int64_t)Py_SIZE((const PyObject *)c);
    out->firstlineno = c->co_firstlineno;
    out->firsttraceable = c->_co_firsttraceable;
    out->first_unit = addr + offsetof(PyCodeObject, co_code_adaptive);
    return 0;
}

/* Reads the field of type T at offset off of raw (a copy that may be
 * shorter than the whole struct). */
#define OXP_FIELD(T, raw, off) oxp_field_##T((const char *)(raw) + (off))
static inline size_t oxp_field_size_t(const char *p)
{
    size_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}
static inline uintptr_t oxp_field_uintptr_t(const char *p)
{
    uintptr_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}
static inline Py_ssize_t oxp_field_Py_ssize_t(const char *p)
{
    Py_ssize_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline int oxp_layout_chunk(const void *raw, oxp_pychunk_t *out)
{
    size_t size = OXP_FIELD(size_t, raw, offsetof(_PyStackChunk, size));
    size_t top = OXP_FIELD(size_t, raw, offsetof(_PyStackChunk, top)); /* in words of data */
    if (top > size / sizeof(PyObject *)) {
        return -1;
    }
    size_t used = offsetof(_PyStackChunk, data) + top * sizeof(PyObject *);
    if (used > size) {
        return -1;
    }
    out->previous = OXP_FIELD(uintptr_t, raw, offsetof(_PyStackChunk, previous));
    out->size = size;
    out->used = used;
    return 0;
}

static inline int oxp_layout_str(const void *raw, oxp_pystr_t *out)
{
    const PyASCIIObject *a = (const PyASCIIObject *)raw;
    if (Py_TYPE((const PyObject *)a) != &PyUnicode_Type || !a->state.compact || a->length < 0) {
        return -1;
    }
    unsigned kind = a->state.kind;
    if (kind != 1 && kind != 2 && kind != 4) {
        return -1;
    }
    out->length = (int64_t)a->length;
    out->kind = kind;
    out->ascii = a->state.ascii;
    out->data = a->state.ascii ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject);
    return 0;
}

static inline int oxp_layout_bytes(const void *raw, size_t *len, size_t *data)
{
    uintptr_t type = OXP_FIELD(uintptr_t, raw, offsetof(PyObject, ob_type));
    Py_ssize_t size = OXP_FIELD(Py_ssize_t, raw, offsetof(PyVarObject, ob_size));
    if (type != (uintptr_t)&PyBytes_Type || size < 0) {
        return -1;
    }
    *len = (size_t)size;
    *data = offsetof(PyBytesObject, ob_sval);
    return 0;
}

/* A module's globals: a dict with combined (not split) keys. */
static inline int oxp_layout_dict(const void *raw, uintptr_t *keys)
{
    const PyDictObject *d = (const PyDictObject *)raw;
    if (Py_TYPE((const PyObject *)d) != &PyDict_Type || d->ma_values != NULL || d->ma_keys == NULL) {
        return -1;
    }
    *keys = (uintptr_t)d->ma_keys;
    return 0;
}

static inline int oxp_layout_dict_keys(const void *raw, uintptr_t keys, oxp_pydictkeys_t *out)
{
    const PyDictKeysObject *k = (const PyDictKeysObject *)raw;
    if (k->dk_log2_index_bytes > 40 || k->dk_nentries < 0) {
        return -1;
    }
    out->entries = keys + offsetof(PyDictKeysObject, dk_indices) + ((uintptr_t)1 << k->dk_log2_index_bytes);
    out->n = (int64_t)k->dk_nentries;
    if (k->dk_kind == DICT_KEYS_UNICODE) {
        out->entry_size = sizeof(PyDictUnicodeEntry);
        out->key = offsetof(PyDictUnicodeEntry, me_key);
        out->value = offsetof(PyDictUnicodeEntry, me_value);
    } else if (k->dk_kind == DICT_KEYS_GENERAL) {
        out->entry_size = sizeof(PyDictKeyEntry);
        out->key = offsetof(PyDictKeyEntry, me_key);
        out->value = offsetof(PyDictKeyEntry, me_value);
    } else {
        return -1;
    }
    return 0;
}

static inline int oxp_layout_function(const void *raw, uintptr_t *code, uintptr_t *module)
{
    const PyFunctionObject *fn = (const PyFunctionObject *)raw;
    if (Py_TYPE((const PyObject *)fn) != &PyFunction_Type) {
        return -1;
    }
    *code = (uintptr_t)fn->func_code;
    *module = (uintptr_t)fn->func_module;
    return 0;
}

#endif
