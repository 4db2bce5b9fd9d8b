/* Bindings of the shared-profile format (share.h): publish this process's
 * profile as a file, read one, and merge several into a Snapshot.  Thin: the
 * format, the file handling and the merge are share.c's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "pystr.h"
#include "share.h"
#include "snapshot.h"

/* -- Python values -> META and TIME items -------------------------------------- */

static int put_meta_value(oxp_buf_t *b, const char *key, Py_ssize_t klen, PyObject *value, uint32_t *n)
{
    if (value == Py_None) {
        return 0;
    }
    if (PyBool_Check(value)) {
        oxp_meta_put_bool(b, key, (size_t)klen, value == Py_True);
    } else if (PyLong_Check(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow) {
            oxp_meta_put_double(b, key, (size_t)klen, PyLong_AsDouble(value));
            if (PyErr_Occurred()) {
                return -1;
            }
        } else {
            oxp_meta_put_int(b, key, (size_t)klen, (int64_t)v);
        }
    } else if (PyFloat_Check(value)) {
        oxp_meta_put_double(b, key, (size_t)klen, PyFloat_AS_DOUBLE(value));
    } else if (PyUnicode_Check(value)) {
        Py_ssize_t len;
        PyObject *owner;
        const char *s = oxp_pystr_utf8(value, &len, &owner);
        if (s == NULL) {
            return -1;
        }
        oxp_meta_put_str(b, key, (size_t)klen, s, (size_t)len);
        Py_XDECREF(owner);
    } else {
        PyErr_Format(PyExc_TypeError, "shared metadata %.100s: %.100s is not a bool, int, float or str", key,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    (*n)++;
    return 0;
}

/* A flat dict of str -> bool/int/float/str/None; a dict value is flattened
 * one level as "key.sub". */
static int encode_meta(PyObject *meta, oxp_buf_t *b, uint32_t *n)
{
    if (!PyDict_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "meta must be a dict");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(meta, &pos, &key, &value)) {
        Py_ssize_t klen;
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &klen) : NULL;
        if (k == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "meta keys must be str");
            }
            return -1;
        }
        if (PyDict_Check(value)) {
            PyObject *sub_key, *sub_value;
            Py_ssize_t sub_pos = 0;
            while (PyDict_Next(value, &sub_pos, &sub_key, &sub_value)) {
                PyObject *full = PyUnicode_FromFormat("%U.%S", key, sub_key);
                if (full == NULL) {
                    return -1;
                }
                Py_ssize_t flen;
                const char *f = PyUnicode_AsUTF8AndSize(full, &flen);
                int rc = f == NULL ? -1 : put_meta_value(b, f, flen, sub_value, n);
                Py_DECREF(full);
                if (rc < 0) {
                    return -1;
                }
            }
        } else if (put_meta_value(b, k, klen, value, n) < 0) {
            return -1;
        }
        if (*n > OXP_SHARE_META_MAX) {
            PyErr_Format(PyExc_ValueError, "more than %u metadata items", OXP_SHARE_META_MAX);
            return -1;
        }
    }
    return 0;
}

/* [(endpoint, count, total, max, errors, [(bucket, count), ...]), ...] */
static int encode_timings(PyObject *timings, oxp_buf_t *b, uint32_t *n)
{
    PyObject *seq = PySequence_Fast(timings, "timings must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *buckets;
        unsigned long long hits, errors;
        double total, max;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UKddKO:timing", &name, &hits, &total, &max,
                              &errors, &buckets)) {
            goto done;
        }
        Py_ssize_t len;
        PyObject *owner = NULL;
        const char *s = oxp_pystr_utf8(name, &len, &owner);
        PyObject *bseq = s == NULL ? NULL : PySequence_Fast(buckets, "buckets must be a sequence");
        if (bseq == NULL) {
            Py_XDECREF(owner);
            goto done;
        }
        Py_ssize_t nb = PySequence_Fast_GET_SIZE(bseq);
        if (nb > (Py_ssize_t)OXP_SHARE_TIMING_BUCKETS) {
            Py_DECREF(bseq);
            PyErr_Format(PyExc_ValueError, "more than %u timing buckets", OXP_SHARE_TIMING_BUCKETS);
            goto done;
        }
        oxp_timing_put(b, s, (size_t)len, hits, total, max, errors, (uint32_t)nb);
        Py_XDECREF(owner);
        for (Py_ssize_t k = 0; k < nb; k++) {
            unsigned int index;
            unsigned long long c;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(bseq, k), "IK:bucket", &index, &c)) {
                Py_DECREF(bseq);
                goto done;
            }
            oxp_timing_put_bucket(b, index, c);
        }
        Py_DECREF(bseq);
        (*n)++;
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* -- META and TIME items -> Python ------------------------------------------- */

static PyObject *meta_dict(const oxp_share_view_t *v)
{
    PyObject *d = PyDict_New();
    const uint8_t *p = v->meta, *end = v->meta ? v->meta + v->meta_len : NULL;
    oxp_meta_item_t item;
    while (d != NULL && oxp_meta_next(&p, end, &item)) {
        PyObject *key = PyUnicode_DecodeUTF8(item.key, (Py_ssize_t)item.key_len, "replace");
        PyObject *value = NULL;
        switch (item.type) {
        case OXP_META_INT:
            value = PyLong_FromLongLong(item.i);
            break;
        case OXP_META_DOUBLE:
            value = PyFloat_FromDouble(item.d);
            break;
        case OXP_META_STR:
            value = PyUnicode_DecodeUTF8(item.s, (Py_ssize_t)item.s_len, "replace");
            break;
        default:
            value = PyBool_FromLong((long)item.i);
            break;
        }
        if (key == NULL || value == NULL || PyDict_SetItem(d, key, value) < 0) {
            Py_CLEAR(d);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return d;
}

static PyObject *timings_list(const oxp_share_view_t *v)
{
    if (v->timings == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New(0);
    const uint8_t *p = v->timings, *end = v->timings + v->timings_len;
    oxp_timing_item_t item;
    while (list != NULL && oxp_timing_next(&p, end, &item)) {
        PyObject *buckets = PyList_New(item.nbuckets);
        for (uint32_t k = 0; buckets != NULL && k < item.nbuckets; k++) {
            uint32_t index;
            uint64_t count;
            oxp_timing_bucket(&item, k, &index, &count);
            PyObject *pair = Py_BuildValue("(IK)", index, (unsigned long long)count);
            if (pair == NULL) {
                Py_CLEAR(buckets);
                break;
            }
            PyList_SET_ITEM(buckets, k, pair);
        }
        PyObject *name = buckets ? PyUnicode_DecodeUTF8(item.name, (Py_ssize_t)item.name_len, "replace") : NULL;
        PyObject *entry = name ? Py_BuildValue("(NKddKN)", name, (unsigned long long)item.count, item.total,
                                               item.max, (unsigned long long)item.errors, buckets)
                               : NULL;
        if (name == NULL) {
            Py_XDECREF(buckets);
        }
        if (entry == NULL || PyList_Append(list, entry) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(entry);
    }
    return list;
}

static int parse_name(PyObject *obj, const char **name)
{
    Py_ssize_t len;
    *name = PyUnicode_Check(obj) ? PyUnicode_AsUTF8AndSize(obj, &len) : NULL;
    if (*name == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "file names must be str");
        }
        return -1;
    }
    if (!oxp_share_name_ok(*name, (size_t)len)) {
        PyErr_Format(PyExc_ValueError, "%R is not a valid shared file name", obj);
        return -1;
    }
    return 0;
}

/* -- publish ------------------------------------------------------------------ */

/* share_publish(dir_fd, name, database, meta, timings, max_bytes) -> bytes written */
static PyObject *share_publish(PyObject *module, PyObject *args)
{
    (void)module;
    int dirfd;
    PyObject *name_obj, *db_obj, *meta_obj, *timings_obj;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "iUOOOn:share_publish", &dirfd, &name_obj, &db_obj, &meta_obj, &timings_obj,
                          &max_bytes)) {
        return NULL;
    }
    const char *name;
    oxp_db_t *db = NULL;
    if (parse_name(name_obj, &name) < 0) {
        return NULL;
    }
    if (db_obj != Py_None && (db = oxp_database_db(db_obj)) == NULL) {
        return NULL;
    }
    oxp_buf_t meta = {0}, timings = {0}, out = {0};
    uint32_t nmeta = 0, ntimings = 0;
    PyObject *result = NULL;
    if (encode_meta(meta_obj, &meta, &nmeta) < 0 ||
        (timings_obj != Py_None && encode_timings(timings_obj, &timings, &ntimings) < 0)) {
        goto done;
    }
    int rc = 0, err = 0;
    Py_BEGIN_ALLOW_THREADS
    oxp_db_t copy;
    int have_copy = 0;
    if (db != NULL) {
        /* Copy under the lock (a memcpy), encode outside it: the sampler
         * waits for the copy only. */
        pthread_mutex_lock(&db->lock);
        rc = oxp_db_copy(&copy, db);
        pthread_mutex_unlock(&db->lock);
        have_copy = rc == 0;
    }
    if (rc == 0) {
        rc = oxp_share_encode(&out, &meta, nmeta, have_copy ? &copy : NULL,
                              timings_obj != Py_None ? &timings : NULL, ntimings);
    }
    if (have_copy) {
        oxp_db_free(&copy);
    }
    if (rc == 0 && out.len <= (size_t)max_bytes) {
        rc = oxp_share_store(dirfd, name, out.p, out.len);
        err = rc < 0 ? errno : 0;
    }
    Py_END_ALLOW_THREADS
    if (rc < 0 && err == 0) {
        PyErr_NoMemory();
    } else if (rc < 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name_obj);
    } else if (out.len > (size_t)max_bytes) {
        PyErr_Format(PyExc_ValueError, "the profile takes %zu bytes, over the limit of %zd", out.len, max_bytes);
    } else {
        result = PyLong_FromSize_t(out.len);
    }
done:
    oxp_buf_free(&meta);
    oxp_buf_free(&timings);
    oxp_buf_free(&out);
    return result;
}

/* -- read ---------------------------------------------------------------------- */

static PyObject *bad_file(PyObject *name, const char *why)
{
    if (strcmp(why, "gone") == 0) {
        PyErr_SetObject(PyExc_FileNotFoundError, name);
    } else {
        PyErr_Format(PyExc_ValueError, "%U: %s", name, why);
    }
    return NULL;
}

/* share_read(dir_fd, name, max_bytes) -> (meta, timings or None, total_hits or None) */
static PyObject *share_read(PyObject *module, PyObject *args)
{
    (void)module;
    int dirfd;
    PyObject *name_obj;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "iUn:share_read", &dirfd, &name_obj, &max_bytes)) {
        return NULL;
    }
    const char *name;
    if (parse_name(name_obj, &name) < 0) {
        return NULL;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    const char *why = NULL;
    oxp_share_view_t v;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = oxp_share_load(dirfd, name, (size_t)max_bytes, &data, &len, &why);
    if (rc == 0) {
        rc = oxp_share_parse(data, len, &v, &why);
    }
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        free(data);
        return bad_file(name_obj, why);
    }
    PyObject *meta = meta_dict(&v), *timings = meta ? timings_list(&v) : NULL;
    PyObject *total = v.has_profile ? PyLong_FromUnsignedLongLong(v.total_hits) : Py_NewRef(Py_None);
    PyObject *result = meta && timings && total ? Py_BuildValue("(OOO)", meta, timings, total) : NULL;
    Py_XDECREF(meta);
    Py_XDECREF(timings);
    Py_XDECREF(total);
    oxp_share_view_free(&v);
    free(data);
    return result;
}

/* -- merge ----------------------------------------------------------------------- */

/* Whether the META of v has every (key, value) of `require`. */
static int meets(const oxp_share_view_t *v, PyObject *require)
{
    if (require == Py_None) {
        return 1;
    }
    PyObject *meta = meta_dict(v);
    if (meta == NULL) {
        return -1;
    }
    PyObject *key, *want;
    Py_ssize_t pos = 0;
    int ok = 1;
    while (ok == 1 && PyDict_Next(require, &pos, &key, &want)) {
        PyObject *have = PyDict_GetItemWithError(meta, key); /* borrowed */
        if (have == NULL) {
            ok = PyErr_Occurred() ? -1 : 0;
        } else {
            ok = PyObject_RichCompareBool(have, want, Py_EQ);
        }
    }
    Py_DECREF(meta);
    return ok;
}

static int pid_of(const oxp_share_view_t *v, long long *pid)
{
    const uint8_t *p = v->meta, *end = v->meta ? v->meta + v->meta_len : NULL;
    oxp_meta_item_t item;
    while (oxp_meta_next(&p, end, &item)) {
        if (item.type == OXP_META_INT && item.key_len == 3 && memcmp(item.key, "pid", 3) == 0) {
            *pid = item.i;
            return 1;
        }
    }
    return 0;
}

/* share_merge(dir_fd, names, own, max_bytes, require, suffix) ->
 *     (Snapshot, [(name, meta, timings, total_hits)], [(name, why)])
 * own: None or (Snapshot, pid): this process's live data, process 0.  Files
 * become processes 1, 2... in the order merged.  A file that cannot be read,
 * fails a check, or whose META lacks one of `require`'s values is skipped and
 * listed with the reason.  suffix: name threads "<name> (pid N)". */
static PyObject *share_merge(PyObject *module, PyObject *args)
{
    (void)module;
    int dirfd, suffix;
    PyObject *names_obj, *own_obj, *require;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "iOOnOp:share_merge", &dirfd, &names_obj, &own_obj, &max_bytes, &require,
                          &suffix)) {
        return NULL;
    }
    if (require != Py_None && !PyDict_Check(require)) {
        PyErr_SetString(PyExc_TypeError, "require must be a dict or None");
        return NULL;
    }
    PyObject *names = PySequence_Fast(names_obj, "names must be a sequence of str");
    if (names == NULL) {
        return NULL;
    }
    PyObject *merged = PyList_New(0), *skipped = PyList_New(0), *result = NULL;
    oxp_db_t db;
    int have_db = 0;
    if (merged == NULL || skipped == NULL) {
        goto done;
    }
    if (oxp_db_init(&db, SIZE_MAX) < 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise a database");
        goto done;
    }
    have_db = 1;
    oxp_id_t process = 0;
    char sfx[64];
    if (own_obj != Py_None) {
        PyObject *snap;
        long long pid;
        if (!PyArg_ParseTuple(own_obj, "OL:own", &snap, &pid)) {
            goto done;
        }
        const oxp_db_t *own = oxp_snapshot_db(snap);
        oxp_share_view_t v;
        if (own == NULL) {
            goto done;
        }
        if (oxp_share_view_of_db(own, &v) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        snprintf(sfx, sizeof(sfx), " (pid %lld)", pid);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = oxp_share_merge(&db, &v, process, suffix ? sfx : NULL);
        Py_END_ALLOW_THREADS
        oxp_share_view_free(&v);
        if (rc < 0) {
            PyErr_NoMemory();
            goto done;
        }
        process++;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(names); i++) {
        PyObject *name_obj = PySequence_Fast_GET_ITEM(names, i);
        const char *name;
        if (parse_name(name_obj, &name) < 0) {
            goto done;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        const char *why = NULL;
        oxp_share_view_t v;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = oxp_share_load(dirfd, name, (size_t)max_bytes, &data, &len, &why);
        if (rc == 0) {
            rc = oxp_share_parse(data, len, &v, &why);
        }
        Py_END_ALLOW_THREADS
        if (rc == 0) {
            int ok = meets(&v, require);
            if (ok < 0) {
                oxp_share_view_free(&v);
                free(data);
                goto done;
            }
            if (!ok) {
                why = "stale (written before the last reset, or by another server)";
                rc = -1;
                oxp_share_view_free(&v);
            }
        }
        if (rc < 0) {
            free(data);
            PyObject *entry = Py_BuildValue("(Os)", name_obj, why);
            if (entry == NULL || PyList_Append(skipped, entry) < 0) {
                Py_XDECREF(entry);
                goto done;
            }
            Py_DECREF(entry);
            continue;
        }
        long long pid = 0;
        if (pid_of(&v, &pid)) {
            snprintf(sfx, sizeof(sfx), " (pid %lld)", pid);
        } else {
            snprintf(sfx, sizeof(sfx), " (%s)", "unknown process");
        }
        Py_BEGIN_ALLOW_THREADS
        rc = oxp_share_merge(&db, &v, process, suffix ? sfx : NULL);
        Py_END_ALLOW_THREADS
        PyObject *meta = rc == 0 ? meta_dict(&v) : NULL;
        PyObject *timings = meta ? timings_list(&v) : NULL;
        PyObject *entry = timings ? Py_BuildValue("(OOOK)", name_obj, meta, timings, (unsigned long long)v.total_hits)
                                  : NULL;
        Py_XDECREF(meta);
        Py_XDECREF(timings);
        oxp_share_view_free(&v);
        free(data);
        if (rc < 0) {
            PyErr_NoMemory();
        }
        if (entry == NULL || PyList_Append(merged, entry) < 0) {
            Py_XDECREF(entry);
            goto done;
        }
        Py_DECREF(entry);
        process++;
    }
    have_db = 0;
    PyObject *snap = oxp_snapshot_adopt(&db);
    if (snap != NULL) {
        result = Py_BuildValue("(NOO)", snap, merged, skipped);
    }
done:
    if (have_db) {
        oxp_db_free(&db);
    }
    Py_DECREF(names);
    Py_XDECREF(merged);
    Py_XDECREF(skipped);
    return result;
}

/* -- test hooks ---------------------------------------------------------------- */

/* _share_encode(meta, database=None, timings=None) -> bytes: a file's bytes. */
static PyObject *share_encode_bytes(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *meta_obj, *db_obj = Py_None, *timings_obj = Py_None;
    if (!PyArg_ParseTuple(args, "O|OO:_share_encode", &meta_obj, &db_obj, &timings_obj)) {
        return NULL;
    }
    oxp_db_t *db = NULL;
    if (db_obj != Py_None && (db = oxp_database_db(db_obj)) == NULL) {
        return NULL;
    }
    oxp_buf_t meta = {0}, timings = {0}, out = {0};
    uint32_t nmeta = 0, ntimings = 0;
    PyObject *result = NULL;
    if (encode_meta(meta_obj, &meta, &nmeta) == 0 &&
        (timings_obj == Py_None || encode_timings(timings_obj, &timings, &ntimings) == 0)) {
        if (db != NULL) {
            pthread_mutex_lock(&db->lock);
        }
        int rc = oxp_share_encode(&out, &meta, nmeta, db, timings_obj != Py_None ? &timings : NULL, ntimings);
        if (db != NULL) {
            pthread_mutex_unlock(&db->lock);
        }
        result = rc == 0 ? PyBytes_FromStringAndSize((const char *)out.p, (Py_ssize_t)out.len) : PyErr_NoMemory();
    }
    oxp_buf_free(&meta);
    oxp_buf_free(&timings);
    oxp_buf_free(&out);
    return result;
}

/* _share_check(data) -> (meta, timings, total_hits, merged rows, merged
 * hits): parses the bytes of a file and merges them into a scratch
 * database; ValueError(why) when they are refused. */
static PyObject *share_check_bytes(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    oxp_share_view_t v;
    const char *why = NULL;
    if (oxp_share_parse(buf.buf, (size_t)buf.len, &v, &why) < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, why);
        return NULL;
    }
    oxp_db_t db;
    PyObject *result = NULL;
    if (oxp_db_init(&db, SIZE_MAX) < 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise a database");
    } else {
        if (oxp_share_merge(&db, &v, 0, " (check)") < 0) {
            PyErr_NoMemory();
        } else {
            PyObject *meta = meta_dict(&v), *timings = meta ? timings_list(&v) : NULL;
            if (timings != NULL) {
                result = Py_BuildValue("(OOKnK)", meta, timings, (unsigned long long)v.total_hits,
                                       (Py_ssize_t)db.counts.len, (unsigned long long)db.total_hits);
            }
            Py_XDECREF(meta);
            Py_XDECREF(timings);
        }
        oxp_db_free(&db);
    }
    oxp_share_view_free(&v);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef share_methods[] = {
    {"share_publish", share_publish, METH_VARARGS,
     "share_publish(dir_fd, name, database, meta, timings, max_bytes) -> bytes written: this process's "
     "profile as a shared file (atomically replaced, 0600)."},
    {"share_read", share_read, METH_VARARGS,
     "share_read(dir_fd, name, max_bytes) -> (meta, timings, total_hits): one shared file, checked."},
    {"share_merge", share_merge, METH_VARARGS,
     "share_merge(dir_fd, names, own, max_bytes, require, suffix) -> (Snapshot, merged, skipped)."},
    {"_share_encode", share_encode_bytes, METH_VARARGS,
     "_share_encode(meta, database=None, timings=None) -> bytes (test helper)."},
    {"_share_check", share_check_bytes, METH_O,
     "_share_check(data) -> (meta, timings, total_hits, rows, hits) or ValueError (test helper)."},
    {NULL, NULL, 0, NULL},
};

int oxp_share_register(PyObject *module)
{
    if (PyModule_AddFunctions(module, share_methods) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "SHARE_FORMAT_VERSION", OXP_SHARE_VERSION);
}
