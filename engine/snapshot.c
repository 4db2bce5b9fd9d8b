/* The Snapshot type: an immutable copy of a database, and the heavy queries
 * the Python Profile runs on it (aggregation, folded stacks, flame tree,
 * pprof).  Rows can be selected by a mask: bytes with one flag per row. */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "pprof.h"
#include "pystr.h"

typedef struct {
    PyObject_HEAD
    oxp_db_t db;              /* frozen: never written after creation */
    int has_db;
    uint32_t nlabels;
    uint32_t *label_of_str;   /* string id -> label index + 1 (0: not a label) */
    oxp_id_t *label_strs;     /* label index -> string id */
    PyObject *functions;      /* Owned, lazily built list */
    PyObject *threads;        /* Owned, lazily built list */
    PyObject *labels;         /* Owned, lazily built list */
    PyObject *rows;           /* Owned, lazily built list */
} SnapshotObject;

static PyTypeObject *snapshot_type; /* Owned: set by oxp_snapshot_register */

/* -- construction -------------------------------------------------------- */

/* Adds the overflow bucket as a visible function/stack/thread/row. */
static int add_overflow_row(oxp_db_t *db)
{
    if (db->overflow_hits == 0) {
        return 0;
    }
    oxp_func_t f;
    oxp_id_t func, stack, thread;
    static const char qual[] = "<samples beyond the memory cap>";
    if (oxp_db_intern(db, "<overflow>", 10, &f.name) < 0 ||
        oxp_db_intern(db, qual, sizeof(qual) - 1, &f.qualname) < 0 ||
        oxp_db_intern(db, "ox_profile", 10, &f.module) < 0 ||
        oxp_db_intern(db, "<ox_profile>", 12, &f.filename) < 0) {
        return -1;
    }
    f.firstlineno = 0;
    oxp_frame_t frame;
    if (oxp_db_func(db, &f, &func) < 0) {
        return -1;
    }
    frame.func = func;
    frame.line = 0;
    if (oxp_db_stack(db, &frame, 1, &stack) < 0 || oxp_db_thread(db, 0, 0, &thread) < 0 ||
        oxp_db_thread_set_name(db, thread, "(memory cap reached)", 20) < 0) {
        return -1;
    }
    uint64_t total = db->total_hits;
    if (oxp_db_add_count(db, thread, OXP_NO_ID, stack, 0, db->overflow_hits, db->overflow_gil_hits,
                         db->overflow_cpu_ns) < 0) {
        return -1;
    }
    db->total_hits = total;
    return 0;
}

static int index_labels(SnapshotObject *self)
{
    size_t nstr = oxp_db_nstrings(&self->db);
    self->label_of_str = PyMem_Calloc(nstr + 1, sizeof(uint32_t));
    self->label_strs = PyMem_Calloc(nstr + 1, sizeof(oxp_id_t));
    if (self->label_of_str == NULL || self->label_strs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const oxp_count_t *rows = oxp_db_counts(&self->db);
    for (size_t i = 0; i < self->db.counts.len; i++) {
        oxp_id_t lab = rows[i].label;
        if (lab != OXP_NO_ID && lab < nstr && self->label_of_str[lab] == 0) {
            self->label_strs[self->nlabels] = lab;
            self->label_of_str[lab] = ++self->nlabels;
        }
    }
    return 0;
}

static SnapshotObject *snapshot_alloc(void)
{
    SnapshotObject *self = (SnapshotObject *)snapshot_type->tp_alloc(snapshot_type, 0);
    return self;
}

PyObject *oxp_snapshot_from_db(oxp_db_t *db)
{
    SnapshotObject *self = snapshot_alloc();
    if (self == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&db->lock);
    int rc = oxp_db_copy(&self->db, db);
    pthread_mutex_unlock(&db->lock);
    if (rc < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->has_db = 1;
    self->db.cap_bytes = SIZE_MAX; /* a snapshot is never over budget */
    if (add_overflow_row(&self->db) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (index_labels(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

PyObject *oxp_snapshot_adopt(oxp_db_t *db)
{
    SnapshotObject *self = snapshot_alloc();
    if (self == NULL) {
        oxp_db_free(db);
        return NULL;
    }
    self->db = *db; /* the tables move; the mutex is never used in a snapshot */
    memset(db, 0, sizeof(*db));
    self->has_db = 1;
    self->db.cap_bytes = SIZE_MAX;
    if (add_overflow_row(&self->db) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (index_labels(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

const oxp_db_t *oxp_snapshot_db(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, snapshot_type)) {
        PyErr_Format(PyExc_TypeError, "expected a Snapshot, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return &((SnapshotObject *)obj)->db;
}

static void Snapshot_dealloc(SnapshotObject *self)
{
    if (self->has_db) {
        oxp_db_free(&self->db);
    }
    PyMem_Free(self->label_of_str);
    PyMem_Free(self->label_strs);
    Py_CLEAR(self->functions);
    Py_CLEAR(self->threads);
    Py_CLEAR(self->labels);
    Py_CLEAR(self->rows);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int intern_pystr(oxp_db_t *db, PyObject *obj, oxp_id_t *out, const char *what)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "Snapshot.from_raw: %s must be str, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    PyObject *owner; /* Owned: the escaped bytes of a str with lone surrogates */
    const char *s = oxp_pystr_utf8(obj, &len, &owner);
    if (s == NULL) {
        return -1;
    }
    int rc = oxp_db_intern(db, s, (size_t)len, out);
    Py_XDECREF(owner);
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Snapshot.from_raw(functions, threads, labels, stacks, rows): rebuilds a
 * snapshot from plain tuples (tests, merging, loading). */
static PyObject *Snapshot_from_raw(PyObject *cls, PyObject *args)
{
    (void)cls;
    PyObject *functions, *threads, *labels, *stacks, *rows;
    if (!PyArg_ParseTuple(args, "OOOOO:from_raw", &functions, &threads, &labels, &stacks, &rows)) {
        return NULL;
    }
    SnapshotObject *self = snapshot_alloc();
    if (self == NULL) {
        return NULL;
    }
    oxp_id_t *label_ids = NULL;
    PyObject *seqs[5] = {NULL, NULL, NULL, NULL, NULL};
    if (oxp_db_init(&self->db, SIZE_MAX) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->has_db = 1;
    oxp_db_t *db = &self->db;
    const char *names[5] = {"functions", "threads", "labels", "stacks", "rows"};
    PyObject *in[5] = {functions, threads, labels, stacks, rows};
    for (int i = 0; i < 5; i++) {
        seqs[i] = PySequence_Fast(in[i], names[i]);
        if (seqs[i] == NULL) {
            goto error;
        }
    }
    Py_ssize_t nf = PySequence_Fast_GET_SIZE(seqs[0]);
    for (Py_ssize_t i = 0; i < nf; i++) {
        PyObject *name, *qual, *mod, *file;
        int first;
        oxp_func_t f;
        oxp_id_t id;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seqs[0], i), "UUUUi:function", &name, &qual, &mod,
                              &file, &first) ||
            intern_pystr(db, name, &f.name, "name") < 0 || intern_pystr(db, qual, &f.qualname, "qualname") < 0 ||
            intern_pystr(db, mod, &f.module, "module") < 0 || intern_pystr(db, file, &f.filename, "filename") < 0) {
            goto error;
        }
        f.firstlineno = first;
        if (oxp_db_func(db, &f, &id) < 0 || id != (oxp_id_t)i) {
            PyErr_Format(PyExc_ValueError, "Snapshot.from_raw: function %zd is a duplicate", i);
            goto error;
        }
    }
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(seqs[1]);
    for (Py_ssize_t i = 0; i < nt; i++) {
        unsigned long long ident, native;
        PyObject *tname;
        oxp_id_t id;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seqs[1], i), "KKO:thread", &ident, &native, &tname)) {
            goto error;
        }
        if (oxp_db_thread(db, ident, native, &id) < 0 || id != (oxp_id_t)i) {
            PyErr_Format(PyExc_ValueError, "Snapshot.from_raw: thread %zd is a duplicate", i);
            goto error;
        }
        if (tname != Py_None) {
            oxp_id_t sid;
            if (intern_pystr(db, tname, &sid, "thread name") < 0) {
                goto error;
            }
            ((oxp_thread_t *)db->threads.data)[id].name = sid;
        }
    }
    Py_ssize_t nl = PySequence_Fast_GET_SIZE(seqs[2]);
    label_ids = PyMem_Calloc((size_t)nl + 1, sizeof(oxp_id_t));
    if (label_ids == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < nl; i++) {
        if (intern_pystr(db, PySequence_Fast_GET_ITEM(seqs[2], i), &label_ids[i], "label") < 0) {
            goto error;
        }
    }
    Py_ssize_t ns = PySequence_Fast_GET_SIZE(seqs[3]);
    oxp_frame_t frames[OXP_MAX_DEPTH];
    for (Py_ssize_t i = 0; i < ns; i++) {
        PyObject *st = PySequence_Fast(PySequence_Fast_GET_ITEM(seqs[3], i), "stack must be a sequence");
        if (st == NULL) {
            goto error;
        }
        Py_ssize_t depth = PySequence_Fast_GET_SIZE(st);
        if (depth > OXP_MAX_DEPTH) {
            Py_DECREF(st);
            PyErr_SetString(PyExc_ValueError, "Snapshot.from_raw: stack deeper than the maximum");
            goto error;
        }
        for (Py_ssize_t k = 0; k < depth; k++) {
            unsigned int func;
            int line;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(st, k), "Ii:frame", &func, &line)) {
                Py_DECREF(st);
                goto error;
            }
            if (func >= nf) {
                Py_DECREF(st);
                PyErr_Format(PyExc_ValueError, "Snapshot.from_raw: frame names function %u of %zd", func, nf);
                goto error;
            }
            frames[k].func = func;
            frames[k].line = line;
        }
        Py_DECREF(st);
        oxp_id_t id;
        if (oxp_db_stack(db, frames, (uint32_t)depth, &id) < 0 || id != (oxp_id_t)i) {
            PyErr_Format(PyExc_ValueError, "Snapshot.from_raw: stack %zd is a duplicate", i);
            goto error;
        }
    }
    Py_ssize_t nr = PySequence_Fast_GET_SIZE(seqs[4]);
    for (Py_ssize_t i = 0; i < nr; i++) {
        int thread, label, stack, idle = 0;
        unsigned long long hits, gil, cpu;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seqs[4], i), "iiiKKK|p:row", &thread, &label, &stack, &hits,
                              &gil, &cpu, &idle)) {
            goto error;
        }
        if (thread < 0 || thread >= nt || stack < 0 || stack >= ns || label < -1 || label >= nl) {
            PyErr_Format(PyExc_ValueError, "Snapshot.from_raw: row %zd refers to a missing thread, label or stack",
                         i);
            goto error;
        }
        if (oxp_db_add_count(db, (oxp_id_t)thread, label < 0 ? OXP_NO_ID : label_ids[label], (oxp_id_t)stack,
                             idle, hits, gil, cpu) < 0) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (int i = 0; i < 5; i++) {
        Py_DECREF(seqs[i]);
    }
    PyMem_Free(label_ids);
    if (index_labels(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;

error:
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(seqs[i]);
    }
    PyMem_Free(label_ids);
    Py_DECREF(self);
    return NULL;
}

/* -- tables -------------------------------------------------------------- */

static PyObject *str_of(const oxp_db_t *db, oxp_id_t id)
{
    const char *s = oxp_db_str(db, id);
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

/* Builds one item of a table (a new reference, or NULL with an exception). */
typedef PyObject *(*item_fn)(SnapshotObject *self, size_t i);

/* The list cached in *slot, built on first use from n items. */
static PyObject *lazy_list(SnapshotObject *self, PyObject **slot, size_t n, item_fn item)
{
    if (*slot == NULL) {
        PyObject *list = PyList_New((Py_ssize_t)n);
        if (list == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            PyObject *v = item(self, i);
            if (v == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, v);
        }
        *slot = list;
    }
    return Py_NewRef(*slot);
}

static PyObject *function_item(SnapshotObject *self, size_t i)
{
    const oxp_func_t *f = &oxp_db_funcs(&self->db)[i];
    return Py_BuildValue("(NNNNi)", str_of(&self->db, f->name), str_of(&self->db, f->qualname),
                         str_of(&self->db, f->module), str_of(&self->db, f->filename), (int)f->firstlineno);
}

static PyObject *thread_item(SnapshotObject *self, size_t i)
{
    const oxp_thread_t *t = &oxp_db_threads(&self->db)[i];
    PyObject *name = t->name == OXP_NO_ID ? Py_NewRef(Py_None) : str_of(&self->db, t->name);
    return Py_BuildValue("(KKN)", (unsigned long long)t->ident, (unsigned long long)t->native_id, name);
}

static PyObject *label_item(SnapshotObject *self, size_t i)
{
    return str_of(&self->db, self->label_strs[i]);
}

static int label_index(const SnapshotObject *self, oxp_id_t lab)
{
    return lab == OXP_NO_ID ? -1 : (int)self->label_of_str[lab] - 1;
}

static PyObject *row_item(SnapshotObject *self, size_t i)
{
    const oxp_count_t *c = &oxp_db_counts(&self->db)[i];
    return Py_BuildValue("(IiIKKKO)", c->thread, label_index(self, c->label), c->stack, (unsigned long long)c->hits,
                         (unsigned long long)c->gil_hits, (unsigned long long)c->cpu_ns, c->idle ? Py_True : Py_False);
}

static PyObject *Snapshot_get_functions(SnapshotObject *self, void *closure)
{
    (void)closure;
    return lazy_list(self, &self->functions, self->db.funcs.len, function_item);
}

static PyObject *Snapshot_get_threads(SnapshotObject *self, void *closure)
{
    (void)closure;
    return lazy_list(self, &self->threads, self->db.threads.len, thread_item);
}

static PyObject *Snapshot_get_labels(SnapshotObject *self, void *closure)
{
    (void)closure;
    return lazy_list(self, &self->labels, self->nlabels, label_item);
}

static PyObject *Snapshot_get_rows(SnapshotObject *self, void *closure)
{
    (void)closure;
    return lazy_list(self, &self->rows, self->db.counts.len, row_item);
}

static PyObject *Snapshot_get_nstacks(SnapshotObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->db.stacks.len);
}

static PyObject *Snapshot_get_total(SnapshotObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->db.total_hits);
}

static PyObject *Snapshot_get_overflow(SnapshotObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->db.overflow_hits);
}

/* thread_processes: per thread, the index of its process in a merged
 * snapshot, or -1. */
static PyObject *Snapshot_get_thread_processes(SnapshotObject *self, void *closure)
{
    (void)closure;
    size_t n = self->db.threads.len;
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        oxp_id_t p = oxp_db_threads(&self->db)[i].process;
        PyObject *v = PyLong_FromLong(p == OXP_NO_ID ? -1L : (long)p);
        if (v == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static PyObject *Snapshot_stack(SnapshotObject *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0 || (size_t)i >= self->db.stacks.len) {
        PyErr_SetString(PyExc_IndexError, "stack index out of range");
        return NULL;
    }
    const oxp_stack_t *st = &oxp_db_stacks(&self->db)[i];
    const oxp_frame_t *fr = oxp_db_frames(&self->db) + st->offset;
    PyObject *tup = PyTuple_New(st->depth);
    if (tup == NULL) {
        return NULL;
    }
    for (uint32_t k = 0; k < st->depth; k++) {
        PyObject *pair = Py_BuildValue("(Ii)", fr[k].func, (int)fr[k].line);
        if (pair == NULL) {
            Py_DECREF(tup);
            return NULL;
        }
        PyTuple_SET_ITEM(tup, k, pair);
    }
    return tup;
}

/* -- queries ------------------------------------------------------------- */

/* Parses an optional row mask (bytes-like, one byte per row, or None). */
static int get_mask(SnapshotObject *self, PyObject *obj, Py_buffer *view, const uint8_t **mask)
{
    *mask = NULL;
    view->obj = NULL;
    if (obj == Py_None) {
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if ((size_t)view->len != self->db.counts.len) {
        PyErr_Format(PyExc_ValueError, "mask has %zd entries for %zu rows", view->len, self->db.counts.len);
        PyBuffer_Release(view);
        return -1;
    }
    *mask = view->buf;
    return 0;
}

static void release_mask(Py_buffer *view)
{
    if (view->obj != NULL) {
        PyBuffer_Release(view);
    }
}

/* aggregate(mask, groups=None) -> [(group, self, total)]: functions merged by
 * groups[function] (default: each its own); total counts a group once per
 * sample even when it recurses. */
/* qsort comparators for aggregate(): the arrays being sorted (GIL held). */
static const uint64_t *agg_self, *agg_total;

static int cmp_agg_self(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (agg_self[x] != agg_self[y]) {
        return agg_self[x] < agg_self[y] ? 1 : -1;
    }
    if (agg_total[x] != agg_total[y]) {
        return agg_total[x] < agg_total[y] ? 1 : -1;
    }
    return x < y ? -1 : (x > y);
}

static int cmp_agg_total(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (agg_total[x] != agg_total[y]) {
        return agg_total[x] < agg_total[y] ? 1 : -1;
    }
    if (agg_self[x] != agg_self[y]) {
        return agg_self[x] < agg_self[y] ? 1 : -1;
    }
    return x < y ? -1 : (x > y);
}

/* Hits per stack of the selected rows, in raw memory (PyMem_RawFree):
 * callable without the GIL; NULL when out of memory, no exception set. */
static uint64_t *stack_hits_raw(const SnapshotObject *self, const uint8_t *mask)
{
    uint64_t *hits = PyMem_RawCalloc(self->db.stacks.len + 1, sizeof(uint64_t));
    if (hits == NULL) {
        return NULL;
    }
    const oxp_count_t *rows = oxp_db_counts(&self->db);
    for (size_t r = 0; r < self->db.counts.len; r++) {
        if (mask == NULL || mask[r]) {
            hits[rows[r].stack] += rows[r].hits;
        }
    }
    return hits;
}

/* stack_hits_raw() with the GIL held: NULL with MemoryError set. */
static uint64_t *stack_hits(const SnapshotObject *self, const uint8_t *mask)
{
    uint64_t *hits = stack_hits_raw(self, mask);
    if (hits == NULL) {
        PyErr_NoMemory();
    }
    return hits;
}

static PyObject *Snapshot_aggregate(SnapshotObject *self, PyObject *args)
{
    PyObject *mask_obj = Py_None, *groups_obj = Py_None;
    const char *order = NULL;
    Py_ssize_t limit = -1;
    if (!PyArg_ParseTuple(args, "|OOzn:aggregate", &mask_obj, &groups_obj, &order, &limit)) {
        return NULL;
    }
    if (order != NULL && strcmp(order, "self") != 0 && strcmp(order, "total") != 0) {
        PyErr_SetString(PyExc_ValueError, "order must be 'self', 'total' or None");
        return NULL;
    }
    int by_total = order != NULL && strcmp(order, "total") == 0;
    Py_buffer view;
    const uint8_t *mask;
    if (get_mask(self, mask_obj, &view, &mask) < 0) {
        return NULL;
    }
    size_t nfuncs = self->db.funcs.len;
    uint32_t *group = PyMem_Malloc((nfuncs + 1) * sizeof(uint32_t));
    PyObject *result = NULL;
    uint64_t *self_hits = NULL, *total_hits = NULL, *stack_sums = NULL;
    uint32_t *stamp = NULL;
    size_t ngroups = nfuncs;
    if (group == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (groups_obj == Py_None) {
        for (size_t i = 0; i < nfuncs; i++) {
            group[i] = (uint32_t)i;
        }
    } else {
        PyObject *seq = PySequence_Fast(groups_obj, "groups must be a sequence of ints");
        if (seq == NULL) {
            goto done;
        }
        if ((size_t)PySequence_Fast_GET_SIZE(seq) != nfuncs) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "groups has %zd entries for %zu functions",
                         PySequence_Fast_GET_SIZE(seq), nfuncs);
            goto done;
        }
        ngroups = 0;
        for (size_t i = 0; i < nfuncs; i++) {
            long g = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i));
            if ((g == -1 && PyErr_Occurred()) || g < 0 || (size_t)g > nfuncs) {
                Py_DECREF(seq);
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "groups must be ints in [0, number of functions]");
                }
                goto done;
            }
            group[i] = (uint32_t)g;
            if ((size_t)g + 1 > ngroups) {
                ngroups = (size_t)g + 1;
            }
        }
        Py_DECREF(seq);
    }
    self_hits = PyMem_Calloc(ngroups + 1, sizeof(uint64_t));
    total_hits = PyMem_Calloc(ngroups + 1, sizeof(uint64_t));
    stamp = PyMem_Calloc(ngroups + 1, sizeof(uint32_t));
    if (self_hits == NULL || total_hits == NULL || stamp == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Sum hits per stack first: many rows share a stack. */
    stack_sums = stack_hits(self, mask);
    if (stack_sums == NULL) {
        goto done;
    }
    const oxp_stack_t *stacks = oxp_db_stacks(&self->db);
    const oxp_frame_t *frames = oxp_db_frames(&self->db);
    uint32_t tick = 0;
    for (size_t i = 0; i < self->db.stacks.len; i++) {
        const oxp_stack_t *st = &stacks[i];
        const oxp_frame_t *fr = frames + st->offset;
        uint64_t hits = stack_sums[i];
        if (st->depth == 0 || hits == 0) {
            continue;
        }
        tick++;
        self_hits[group[fr[0].func]] += hits;
        for (uint32_t k = 0; k < st->depth; k++) {
            uint32_t g = group[fr[k].func];
            if (stamp[g] != tick) {
                stamp[g] = tick;
                total_hits[g] += hits;
            }
        }
    }
    /* The groups with hits, optionally sorted (most first) and cut. */
    size_t nout = 0;
    for (size_t g = 0; g < ngroups; g++) {
        if (total_hits[g] != 0) {
            stamp[nout++] = (uint32_t)g; /* reuse stamp as the output order */
        }
    }
    if (order != NULL) {
        agg_self = self_hits;
        agg_total = total_hits;
        qsort(stamp, nout, sizeof(uint32_t), by_total ? cmp_agg_total : cmp_agg_self);
        if (limit >= 0 && (size_t)limit < nout) {
            nout = (size_t)limit;
        }
    }
    result = PyList_New((Py_ssize_t)nout);
    if (result == NULL) {
        goto done;
    }
    for (size_t i = 0; i < nout; i++) {
        size_t g = stamp[i];
        PyObject *t = Py_BuildValue("(nKK)", (Py_ssize_t)g, (unsigned long long)self_hits[g],
                                    (unsigned long long)total_hits[g]);
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, t);
    }
done:
    release_mask(&view);
    PyMem_Free(group);
    PyMem_Free(self_hits);
    PyMem_Free(total_hits);
    PyMem_RawFree(stack_sums);
    PyMem_Free(stamp);
    return result;
}

/* Parses the optional mask argument of methods that take only that. */
static int parse_mask_arg(SnapshotObject *self, PyObject *args, const char *format, Py_buffer *view,
                          const uint8_t **mask)
{
    PyObject *mask_obj = Py_None;
    if (!PyArg_ParseTuple(args, format, &mask_obj)) {
        return -1;
    }
    return get_mask(self, mask_obj, view, mask);
}

typedef struct {
    uint64_t *keys; /* (function << 32) | (uint32_t)line */
    uint64_t *sums; /* self hits of that leaf line */
    size_t n;
} leaf_lines_t;

static void leaf_lines_free(leaf_lines_t *ll)
{
    PyMem_Free(ll->keys);
    PyMem_Free(ll->sums);
}

typedef struct {
    const uint64_t *keys;
    uint64_t key;
} leaf_key_t;

static int leaf_key_eq(const void *ctx, uint32_t id)
{
    const leaf_key_t *k = ctx;
    return k->keys[id] == k->key;
}

/* The self hits of every distinct leaf (function, line) of the selected
 * rows.  0 / -1 with an exception. */
static int leaf_lines(SnapshotObject *self, const uint8_t *mask, leaf_lines_t *out)
{
    size_t nrows = self->db.counts.len;
    out->keys = PyMem_Malloc((nrows + 1) * sizeof(uint64_t));
    out->sums = PyMem_Calloc(nrows + 1, sizeof(uint64_t));
    out->n = 0;
    oxp_index_t ix = {0};
    if (out->keys == NULL || out->sums == NULL) {
        goto nomem;
    }
    const oxp_count_t *rows = oxp_db_counts(&self->db);
    const oxp_stack_t *stacks = oxp_db_stacks(&self->db);
    const oxp_frame_t *frames = oxp_db_frames(&self->db);
    for (size_t r = 0; r < nrows; r++) {
        const oxp_stack_t *st = &stacks[rows[r].stack];
        if ((mask != NULL && !mask[r]) || rows[r].hits == 0 || st->depth == 0) {
            continue;
        }
        const oxp_frame_t *leaf = frames + st->offset;
        uint64_t key = ((uint64_t)leaf->func << 32) | (uint32_t)leaf->line;
        uint32_t h = oxp_hash_bytes(&key, sizeof(key), 0x11u);
        leaf_key_t want = {out->keys, key};
        uint32_t found = oxp_index_find(&ix, h, leaf_key_eq, &want);
        if (found == UINT32_MAX) {
            if (oxp_index_grow(&ix, 64) < 0) {
                goto nomem;
            }
            out->keys[out->n] = key;
            oxp_index_put(&ix, h, (uint32_t)out->n);
            found = (uint32_t)out->n++;
        }
        out->sums[found] += rows[r].hits;
    }
    oxp_index_free(&ix);
    return 0;
nomem:
    oxp_index_free(&ix);
    leaf_lines_free(out);
    PyErr_NoMemory();
    return -1;
}

/* line_hits(mask) -> [(function, line, self hits)] for every leaf line. */
static PyObject *Snapshot_line_hits(SnapshotObject *self, PyObject *args)
{
    Py_buffer view;
    const uint8_t *mask;
    leaf_lines_t ll;
    if (parse_mask_arg(self, args, "|O:line_hits", &view, &mask) < 0) {
        return NULL;
    }
    int rc = leaf_lines(self, mask, &ll);
    release_mask(&view);
    if (rc < 0) {
        return NULL;
    }
    PyObject *result = PyList_New((Py_ssize_t)ll.n);
    for (size_t i = 0; result != NULL && i < ll.n; i++) {
        PyObject *t = Py_BuildValue("(IiK)", (unsigned int)(ll.keys[i] >> 32), (int)(int32_t)(ll.keys[i] & 0xffffffffu),
                                    (unsigned long long)ll.sums[i]);
        if (t == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, t);
    }
    leaf_lines_free(&ll);
    return result;
}

/* hot_lines(mask) -> [line] per function: the leaf line with most self hits
 * (0 where the function never was a leaf). */
static PyObject *Snapshot_hot_lines(SnapshotObject *self, PyObject *args)
{
    Py_buffer view;
    const uint8_t *mask;
    leaf_lines_t ll;
    if (parse_mask_arg(self, args, "|O:hot_lines", &view, &mask) < 0) {
        return NULL;
    }
    int rc = leaf_lines(self, mask, &ll);
    release_mask(&view);
    if (rc < 0) {
        return NULL;
    }
    size_t nfuncs = self->db.funcs.len;
    uint64_t *best = PyMem_Calloc(nfuncs + 1, sizeof(uint64_t));
    int32_t *line = PyMem_Calloc(nfuncs + 1, sizeof(int32_t));
    PyObject *result = NULL;
    if (best == NULL || line == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < ll.n; i++) {
        size_t f = (size_t)(ll.keys[i] >> 32);
        if (f < nfuncs && ll.sums[i] > best[f]) {
            best[f] = ll.sums[i];
            line[f] = (int32_t)(ll.keys[i] & 0xffffffffu);
        }
    }
    result = PyList_New((Py_ssize_t)nfuncs);
    for (size_t f = 0; result != NULL && f < nfuncs; f++) {
        PyObject *v = PyLong_FromLong(line[f]);
        if (v == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)f, v);
    }
done:
    leaf_lines_free(&ll);
    PyMem_Free(best);
    PyMem_Free(line);
    return result;
}

typedef struct {
    char *data;
    size_t len, cap;
} strbuf_t;

static int sb_put(strbuf_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }
        char *d = PyMem_RawRealloc(b->data, cap); /* raw: used without the GIL */
        if (d == NULL) {
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* A distinct folded path: where its text is in the buffer, and its hits. */
typedef struct {
    size_t offset, len;
    uint64_t hits;
} path_t;

typedef struct {
    const path_t *paths;
    const char *data; /* the text the paths point into */
    size_t offset, len; /* the path looked for */
} path_key_t;

static int path_key_eq(const void *ctx, uint32_t id)
{
    const path_key_t *k = ctx;
    return k->paths[id].len == k->len && memcmp(k->data + k->paths[id].offset, k->data + k->offset, k->len) == 0;
}

/* folded(mask, names) -> str: "root;...;leaf count" per distinct path of
 * names. */
static PyObject *Snapshot_folded(SnapshotObject *self, PyObject *args)
{
    PyObject *mask_obj, *names_obj;
    if (!PyArg_ParseTuple(args, "OO:folded", &mask_obj, &names_obj)) {
        return NULL;
    }
    Py_buffer view;
    const uint8_t *mask;
    if (get_mask(self, mask_obj, &view, &mask) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *seq = NULL;
    const char **names = NULL;
    Py_ssize_t *lens = NULL;
    PyObject **owners = NULL; /* Owned: escaped bytes of names with lone surrogates, or NULL */
    uint64_t *hits = NULL;
    strbuf_t sb = {NULL, 0, 0}, out = {NULL, 0, 0};
    oxp_index_t ix = {0};
    path_t *paths = NULL;
    size_t nfuncs = self->db.funcs.len;
    seq = PySequence_Fast(names_obj, "names must be a sequence of str");
    if (seq == NULL) {
        goto done;
    }
    if ((size_t)PySequence_Fast_GET_SIZE(seq) != nfuncs) {
        PyErr_Format(PyExc_ValueError, "names has %zd entries for %zu functions", PySequence_Fast_GET_SIZE(seq),
                     nfuncs);
        goto done;
    }
    names = PyMem_Malloc((nfuncs + 1) * sizeof(char *));
    lens = PyMem_Malloc((nfuncs + 1) * sizeof(Py_ssize_t));
    owners = PyMem_Calloc(nfuncs + 1, sizeof(PyObject *));
    if (names == NULL || lens == NULL || owners == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < nfuncs; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i);
        if (!PyUnicode_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "names must be str");
            goto done;
        }
        names[i] = oxp_pystr_utf8(o, &lens[i], &owners[i]);
        if (names[i] == NULL) {
            goto done;
        }
    }
    hits = stack_hits(self, mask);
    if (hits == NULL) {
        goto done;
    }
    /* Each path of names is written into sb once: stacks that differ only in
     * their lines, or whose functions share names, give the same text and
     * are merged into one line. */
    paths = PyMem_Malloc((self->db.stacks.len + 1) * sizeof(path_t));
    if (paths == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    size_t npaths = 0;
    const oxp_stack_t *stacks = oxp_db_stacks(&self->db);
    const oxp_frame_t *frames = oxp_db_frames(&self->db);
    for (size_t s = 0; s < self->db.stacks.len; s++) {
        if (hits[s] == 0 || stacks[s].depth == 0) {
            continue;
        }
        const oxp_frame_t *fr = frames + stacks[s].offset;
        size_t line_start = sb.len;
        for (uint32_t k = stacks[s].depth; k-- > 0;) {
            size_t start = sb.len;
            if (sb_put(&sb, names[fr[k].func], (size_t)lens[fr[k].func]) < 0 || (k && sb_put(&sb, ";", 1) < 0)) {
                PyErr_NoMemory();
                goto done;
            }
            /* Separators inside a name would split the frame. */
            for (size_t c = start; c < start + (size_t)lens[fr[k].func]; c++) {
                if (sb.data[c] == ';' || sb.data[c] == '\n' || sb.data[c] == '\r') {
                    sb.data[c] = '_';
                }
            }
        }
        size_t len = sb.len - line_start;
        uint32_t h = oxp_hash_bytes(sb.data + line_start, len, 0xf0u);
        path_key_t want = {paths, sb.data, line_start, len};
        uint32_t found = oxp_index_find(&ix, h, path_key_eq, &want);
        if (found != UINT32_MAX) {
            paths[found].hits += hits[s];
            sb.len = line_start; /* already written */
            continue;
        }
        if (oxp_index_grow(&ix, 1024) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        paths[npaths].offset = line_start;
        paths[npaths].len = len;
        paths[npaths].hits = hits[s];
        oxp_index_put(&ix, h, (uint32_t)npaths++);
    }
    for (size_t i = 0; i < npaths; i++) {
        char num[32];
        int n = snprintf(num, sizeof(num), " %llu\n", (unsigned long long)paths[i].hits);
        if (sb_put(&out, sb.data + paths[i].offset, paths[i].len) < 0 || sb_put(&out, num, (size_t)n) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    result = PyUnicode_DecodeUTF8(out.data ? out.data : "", (Py_ssize_t)out.len, "replace");
done:
    oxp_index_free(&ix);
    PyMem_Free(paths);
    PyMem_RawFree(out.data);
    release_mask(&view);
    Py_XDECREF(seq);
    for (size_t i = 0; owners != NULL && i < nfuncs; i++) {
        Py_XDECREF(owners[i]);
    }
    PyMem_Free(owners);
    PyMem_Free(names);
    PyMem_Free(lens);
    PyMem_RawFree(hits);
    PyMem_RawFree(sb.data);
    return result;
}

/* flame(mask) -> [-1, total, 0, children]; a node is [function, total, self,
 * children], children ordered by total, most first. */
typedef struct {
    uint32_t func;
    uint32_t parent;
    uint64_t total, self;
    uint32_t first_child, next_sibling; /* node index + 1, 0 = none */
} fnode_t;

static PyObject *build_flame_list(const fnode_t *nodes, uint32_t root)
{
    /* Iterative post-order build: a stack of (node, list) pairs. */
    typedef struct {
        uint32_t node;
        PyObject *children;
    } frame_t;
    size_t cap = 64, top = 0;
    frame_t *stack = PyMem_Malloc(cap * sizeof(frame_t));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    PyObject *children = PyList_New(0);
    if (children == NULL) {
        PyMem_Free(stack);
        return NULL;
    }
    stack[top].node = root;
    stack[top].children = children;
    top++;
    /* Visit children lazily: use next pointers stored per frame. */
    uint32_t *cursor = PyMem_Malloc(cap * sizeof(uint32_t));
    if (cursor == NULL) {
        Py_DECREF(children);
        PyMem_Free(stack);
        return PyErr_NoMemory();
    }
    cursor[0] = nodes[root].first_child;
    while (top > 0) {
        uint32_t next = cursor[top - 1];
        if (next != 0) {
            uint32_t child = next - 1;
            cursor[top - 1] = nodes[child].next_sibling;
            if (top == cap) {
                cap *= 2;
                frame_t *ns = PyMem_Realloc(stack, cap * sizeof(frame_t));
                uint32_t *nc = ns ? PyMem_Realloc(cursor, cap * sizeof(uint32_t)) : NULL;
                if (ns) {
                    stack = ns;
                }
                if (nc == NULL) {
                    PyErr_NoMemory();
                    goto fail;
                }
                cursor = nc;
            }
            PyObject *kids = PyList_New(0);
            if (kids == NULL) {
                goto fail;
            }
            stack[top].node = child;
            stack[top].children = kids;
            cursor[top] = nodes[child].first_child;
            top++;
            continue;
        }
        /* All children done: close this node. */
        top--;
        const fnode_t *nd = &nodes[stack[top].node];
        PyObject *item = Py_BuildValue("[iKKN]", stack[top].node == root ? -1 : (int)nd->func,
                                       (unsigned long long)nd->total, (unsigned long long)nd->self,
                                       stack[top].children);
        if (item == NULL) {
            stack[top].children = NULL;
            goto fail;
        }
        if (top == 0) {
            result = item;
            break;
        }
        int rc = PyList_Append(stack[top - 1].children, item);
        Py_DECREF(item);
        if (rc < 0) {
            goto fail;
        }
    }
    PyMem_Free(stack);
    PyMem_Free(cursor);
    return result;
fail:
    for (size_t i = 0; i < top; i++) {
        Py_XDECREF(stack[i].children);
    }
    PyMem_Free(stack);
    PyMem_Free(cursor);
    return NULL;
}

/* What cmp_root_paths compares: the snapshot's stacks and frames (qsort_r's
 * context, so that builds in several threads need no shared state). */
typedef struct {
    const oxp_stack_t *stacks;
    const oxp_frame_t *frames;
} stack_order_t;

/* Orders stacks by their functions from the root (lines do not matter), so
 * that stacks sharing a path from the root are next to each other. */
static int cmp_root_paths(const void *a, const void *b, void *ctx)
{
    const stack_order_t *o = ctx;
    const oxp_stack_t *sa = &o->stacks[*(const uint32_t *)a], *sb = &o->stacks[*(const uint32_t *)b];
    const oxp_frame_t *fa = o->frames + sa->offset, *fb = o->frames + sb->offset;
    uint32_t da = sa->depth, db = sb->depth;
    for (uint32_t k = 0; k < da && k < db; k++) {
        uint32_t x = fa[da - 1 - k].func, y = fb[db - 1 - k].func;
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return da < db ? -1 : (da > db ? 1 : 0);
}

/* Orders node numbers (index + 1) of the array ctx by total, most first. */
static int cmp_total_desc_func(const void *a, const void *b, void *ctx)
{
    const fnode_t *nodes = ctx;
    const fnode_t *na = &nodes[*(const uint32_t *)a - 1], *nb = &nodes[*(const uint32_t *)b - 1];
    if (na->total != nb->total) {
        return na->total < nb->total ? 1 : -1;
    }
    return na->func < nb->func ? -1 : (na->func > nb->func ? 1 : 0);
}

/* Builds the call tree of the selected rows into raw memory (PyMem_RawFree):
 * nodes[0] is the root; children are linked most total first (then by
 * function).  The stacks are sorted by their path from the root, so each
 * node is made once, when the first stack through it comes, with no hash
 * lookups.  Runs without the GIL and touches no shared state; 0, or -1 when
 * out of memory, with no exception set. */
static int build_flame_nodes(const SnapshotObject *self, const uint8_t *mask, fnode_t **nodes_out, size_t *nn_out)
{
    fnode_t *nodes = NULL;
    uint32_t *order = NULL, *path = NULL, *kids = NULL;
    uint64_t *hits = stack_hits_raw(self, mask);
    if (hits == NULL) {
        return -1;
    }
    const oxp_stack_t *stacks = oxp_db_stacks(&self->db);
    const oxp_frame_t *frames = oxp_db_frames(&self->db);
    size_t nstacks = self->db.stacks.len, nsel = 0, nframes = 0, maxdepth = 0;
    uint64_t root_total = 0;
    for (size_t s = 0; s < nstacks; s++) {
        if (hits[s] != 0) {
            root_total += hits[s];
            if (stacks[s].depth > 0) {
                nsel++;
                nframes += stacks[s].depth;
                maxdepth = stacks[s].depth > maxdepth ? stacks[s].depth : maxdepth;
            }
        }
    }
    order = PyMem_RawMalloc((nsel + 1) * sizeof(uint32_t));
    path = PyMem_RawMalloc((maxdepth + 1) * sizeof(uint32_t));
    nodes = PyMem_RawCalloc(nframes + 1, sizeof(fnode_t)); /* at most one node per frame */
    if (order == NULL || path == NULL || nodes == NULL) {
        goto nomem;
    }
    nsel = 0;
    for (size_t s = 0; s < nstacks; s++) {
        if (hits[s] != 0 && stacks[s].depth > 0) {
            order[nsel++] = (uint32_t)s;
        }
    }
    stack_order_t by_path = {stacks, frames};
    qsort_r(order, nsel, sizeof(uint32_t), cmp_root_paths, &by_path);
    size_t nn = 1, plen = 0; /* path[k]: the node at depth k + 1 of the previous stack */
    nodes[0].func = UINT32_MAX;
    nodes[0].total = root_total;
    for (size_t i = 0; i < nsel; i++) {
        uint32_t s = order[i], d = stacks[s].depth;
        const oxp_frame_t *fr = frames + stacks[s].offset; /* leaf first */
        uint64_t h = hits[s];
        size_t common = 0;
        while (common < plen && common < d && nodes[path[common]].func == fr[d - 1 - common].func) {
            common++;
        }
        for (size_t k = common; k < d; k++) {
            uint32_t parent = k ? path[k - 1] : 0, n = (uint32_t)nn++;
            nodes[n].func = fr[d - 1 - k].func;
            nodes[n].parent = parent;
            nodes[n].next_sibling = nodes[parent].first_child;
            nodes[parent].first_child = n + 1;
            path[k] = n;
        }
        plen = d;
        for (size_t k = 0; k < d; k++) {
            nodes[path[k]].total += h;
        }
        nodes[path[d - 1]].self += h;
    }
    /* Order each node's children by total, most first.  Each child was made
     * by a different stack, so `order` has room for any node's children. */
    kids = order;
    order = NULL;
    for (size_t p = 0; p < nn; p++) {
        size_t nk = 0;
        for (uint32_t c = nodes[p].first_child; c; c = nodes[c - 1].next_sibling) {
            kids[nk++] = c;
        }
        if (nk > 1) {
            qsort_r(kids, nk, sizeof(uint32_t), cmp_total_desc_func, nodes);
        }
        uint32_t link = 0;
        for (size_t i = nk; i-- > 0;) {
            nodes[kids[i] - 1].next_sibling = link;
            link = kids[i];
        }
        nodes[p].first_child = link;
    }
    PyMem_RawFree(kids);
    PyMem_RawFree(path);
    PyMem_RawFree(order);
    PyMem_RawFree(hits);
    *nodes_out = nodes;
    *nn_out = nn;
    return 0;
nomem:
    PyMem_RawFree(kids);
    PyMem_RawFree(path);
    PyMem_RawFree(order);
    PyMem_RawFree(hits);
    PyMem_RawFree(nodes);
    return -1;
}

static PyObject *Snapshot_flame(SnapshotObject *self, PyObject *args)
{
    Py_buffer view;
    const uint8_t *mask;
    if (parse_mask_arg(self, args, "|O:flame", &view, &mask) < 0) {
        return NULL;
    }
    fnode_t *nodes;
    size_t nn;
    PyObject *result = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = build_flame_nodes(self, mask, &nodes, &nn);
    Py_END_ALLOW_THREADS
    if (rc == 0) {
        result = build_flame_list(nodes, 0);
        PyMem_RawFree(nodes);
    } else {
        PyErr_NoMemory();
    }
    release_mask(&view);
    return result;
}

/* The nodes a bounded flame tree keeps: the `max_nodes` with most samples,
 * chosen best first from the root, so a kept node's parent is kept and its
 * kept children are the first of its children (they are sorted by total).
 * keep[] gets 1 per kept node; returns how many (the root included). */
typedef struct {
    uint32_t *items;
    size_t len, cap;
} nheap_t;

static int nheap_before(const fnode_t *nodes, uint32_t a, uint32_t b)
{
    uint64_t ta = nodes[a].total, tb = nodes[b].total;
    return ta > tb || (ta == tb && a < b);
}

static int nheap_push(nheap_t *h, const fnode_t *nodes, uint32_t node)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        uint32_t *grown = PyMem_RawRealloc(h->items, cap * sizeof(uint32_t));
        if (grown == NULL) {
            return -1;
        }
        h->items = grown;
        h->cap = cap;
    }
    size_t i = h->len++;
    while (i > 0 && nheap_before(nodes, node, h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = node;
    return 0;
}

static uint32_t nheap_pop(nheap_t *h, const fnode_t *nodes)
{
    uint32_t top = h->items[0], last = h->items[--h->len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len) {
            break;
        }
        if (c + 1 < h->len && nheap_before(nodes, h->items[c + 1], h->items[c])) {
            c++;
        }
        if (!nheap_before(nodes, h->items[c], last)) {
            break;
        }
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->len > 0) {
        h->items[i] = last;
    }
    return top;
}

static int select_nodes(const fnode_t *nodes, size_t max_nodes, uint8_t *keep, size_t *kept_out)
{
    nheap_t heap = {NULL, 0, 0};
    size_t kept = 1;
    keep[0] = 1;
    if (nodes[0].first_child && nheap_push(&heap, nodes, nodes[0].first_child - 1) < 0) {
        goto nomem;
    }
    while (heap.len > 0 && kept < max_nodes) {
        uint32_t n = nheap_pop(&heap, nodes);
        keep[n] = 1;
        kept++;
        if ((nodes[n].first_child && nheap_push(&heap, nodes, nodes[n].first_child - 1) < 0) ||
            (nodes[n].next_sibling && nheap_push(&heap, nodes, nodes[n].next_sibling - 1) < 0)) {
            goto nomem;
        }
    }
    PyMem_RawFree(heap.items);
    *kept_out = kept;
    return 0;
nomem:
    PyMem_RawFree(heap.items);
    return -1;
}

/* The tree of the selected rows as JSON text, written without recursion
 * (trees can be thousands of frames deep) into *out (raw memory).  With
 * max_nodes > 0 only the nodes select_nodes() keeps are written; *nodes_out
 * and *kept_out get the tree's size and how many nodes were written,
 * *cut_out the samples of the subtrees left out.  Runs without the GIL;
 * -1 when out of memory, with no exception set. */
static int flame_json_build(const SnapshotObject *self, const uint8_t *mask, size_t max_nodes, strbuf_t *out,
                            size_t *nodes_out, size_t *kept_out, uint64_t *cut_out)
{
    fnode_t *nodes;
    size_t nn;
    if (build_flame_nodes(self, mask, &nodes, &nn) < 0) {
        return -1;
    }
    int rc = -1;
    strbuf_t sb = {NULL, 0, 0};
    uint32_t *stack = PyMem_RawMalloc((nn + 1) * sizeof(uint32_t)); /* next child to visit, per level */
    uint32_t *path = PyMem_RawMalloc((nn + 1) * sizeof(uint32_t));
    uint8_t *keep = NULL; /* NULL: every node */
    if (stack == NULL || path == NULL) {
        goto done;
    }
    *nodes_out = *kept_out = nn;
    *cut_out = 0;
    if (max_nodes > 0 && nn > max_nodes) {
        keep = PyMem_RawCalloc(nn, 1);
        if (keep == NULL || select_nodes(nodes, max_nodes, keep, kept_out) < 0) {
            goto done;
        }
        for (size_t i = 1; i < nn; i++) {
            if (!keep[i] && keep[nodes[i].parent]) {
                *cut_out += nodes[i].total;
            }
        }
    }
    size_t top = 0;
    char num[96];
    /* Open the root. */
    int n = snprintf(num, sizeof(num), "[-1,%llu,%llu,[", (unsigned long long)nodes[0].total,
                     (unsigned long long)nodes[0].self);
    if (sb_put(&sb, num, (size_t)n) < 0) {
        goto done;
    }
    path[0] = 0;
    stack[0] = nodes[0].first_child;
    top = 1;
    while (top > 0) {
        uint32_t next = stack[top - 1];
        if (next != 0 && keep != NULL && !keep[next - 1]) {
            next = 0; /* the kept children come first: the rest is left out */
        }
        if (next == 0) {
            if (sb_put(&sb, "]]", 2) < 0) {
                goto done;
            }
            top--;
            continue;
        }
        uint32_t child = next - 1;
        stack[top - 1] = nodes[child].next_sibling;
        int first = nodes[path[top - 1]].first_child == next;
        n = snprintf(num, sizeof(num), "%s[%u,%llu,%llu,[", first ? "" : ",", nodes[child].func,
                     (unsigned long long)nodes[child].total, (unsigned long long)nodes[child].self);
        if (sb_put(&sb, num, (size_t)n) < 0) {
            goto done;
        }
        path[top] = child;
        stack[top] = nodes[child].first_child;
        top++;
    }
    *out = sb;
    sb.data = NULL;
    rc = 0;
done:
    PyMem_RawFree(keep);
    PyMem_RawFree(stack);
    PyMem_RawFree(path);
    PyMem_RawFree(sb.data);
    PyMem_RawFree(nodes);
    return rc;
}

/* flame_json_build() with the GIL released while it runs (a full database's
 * tree takes a few hundred ms: other threads of the server go on meanwhile;
 * the pages build one at a time, ui/core/pagedata.BuildGate).  A str, or
 * NULL with an exception. */
static PyObject *flame_json_text(SnapshotObject *self, const uint8_t *mask, size_t max_nodes, size_t *nodes_out,
                                 size_t *kept_out, uint64_t *cut_out)
{
    strbuf_t sb = {NULL, 0, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = flame_json_build(self, mask, max_nodes, &sb, nodes_out, kept_out, cut_out);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return PyErr_NoMemory();
    }
    PyObject *result = PyUnicode_DecodeASCII(sb.data, (Py_ssize_t)sb.len, "strict");
    PyMem_RawFree(sb.data);
    return result;
}

/* flame_json(mask) -> the same tree as flame(), as JSON text. */
static PyObject *Snapshot_flame_json(SnapshotObject *self, PyObject *args)
{
    Py_buffer view;
    const uint8_t *mask;
    if (parse_mask_arg(self, args, "|O:flame_json", &view, &mask) < 0) {
        return NULL;
    }
    size_t nodes, kept;
    uint64_t cut;
    PyObject *result = flame_json_text(self, mask, 0, &nodes, &kept, &cut);
    release_mask(&view);
    return result;
}

/* flame_json_bounded(mask, max_nodes) -> (json, nodes, kept, cut_samples):
 * the tree cut to the max_nodes nodes with most samples (the root counts). */
static PyObject *Snapshot_flame_json_bounded(SnapshotObject *self, PyObject *args)
{
    PyObject *mask_obj;
    Py_ssize_t max_nodes;
    if (!PyArg_ParseTuple(args, "On:flame_json_bounded", &mask_obj, &max_nodes)) {
        return NULL;
    }
    if (max_nodes < 1) {
        PyErr_SetString(PyExc_ValueError, "max_nodes must be at least 1");
        return NULL;
    }
    Py_buffer view;
    const uint8_t *mask;
    if (get_mask(self, mask_obj, &view, &mask) < 0) {
        return NULL;
    }
    size_t nodes, kept;
    uint64_t cut;
    PyObject *text = flame_json_text(self, mask, (size_t)max_nodes, &nodes, &kept, &cut);
    release_mask(&view);
    if (text == NULL) {
        return NULL;
    }
    return Py_BuildValue("(NnnK)", text, (Py_ssize_t)nodes, (Py_ssize_t)kept, (unsigned long long)cut);
}

/* strip_roots(flags) -> a new Snapshot whose stacks lose their root-most
 * frames while those frames' functions are flagged (flags: one byte per
 * function), e.g. the frames of the tool that ran the program; a stack of
 * flagged frames only (the tool at work before or after the program) is
 * left out. */
static PyObject *Snapshot_strip_roots(SnapshotObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if ((size_t)view.len != self->db.funcs.len) {
        PyErr_Format(PyExc_ValueError, "flags has %zd entries for %zu functions", view.len, self->db.funcs.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    const uint8_t *flags = view.buf;
    SnapshotObject *out = snapshot_alloc();
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    oxp_db_t *db = &out->db;
    const oxp_db_t *src = &self->db;
    int ok = oxp_db_init(db, SIZE_MAX) == 0;
    out->has_db = ok;
    /* Same strings, functions and threads, in the same order: ids carry over. */
    for (size_t i = 0; ok && i < oxp_db_nstrings(src); i++) {
        oxp_id_t id;
        const char *str = oxp_db_str(src, (oxp_id_t)i);
        ok = oxp_db_intern(db, str, strlen(str), &id) == 0 && id == (oxp_id_t)i;
    }
    for (size_t i = 0; ok && i < src->funcs.len; i++) {
        oxp_id_t id;
        ok = oxp_db_func(db, &oxp_db_funcs(src)[i], &id) == 0 && id == (oxp_id_t)i;
    }
    for (size_t i = 0; ok && i < src->threads.len; i++) {
        const oxp_thread_t *t = &oxp_db_threads(src)[i];
        oxp_id_t id;
        ok = oxp_db_thread_in(db, t->process, t->ident, t->native_id, &id) == 0 && id == (oxp_id_t)i;
        if (ok) {
            ((oxp_thread_t *)db->threads.data)[id].name = t->name;
        }
    }
    const oxp_count_t *rows = oxp_db_counts(src);
    for (size_t r = 0; ok && r < src->counts.len; r++) {
        const oxp_stack_t *st = &oxp_db_stacks(src)[rows[r].stack];
        const oxp_frame_t *fr = oxp_db_frames(src) + st->offset;
        uint32_t depth = st->depth;
        while (depth > 0 && flags[fr[depth - 1].func]) {
            depth--; /* leaf first: the root is at the end */
        }
        if (depth == 0) {
            continue; /* nothing but flagged frames: none of it is kept */
        }
        oxp_id_t stack;
        ok = oxp_db_stack(db, fr, depth, &stack) == 0 &&
             oxp_db_add_count(db, rows[r].thread, rows[r].label, stack, rows[r].idle, rows[r].hits,
                              rows[r].gil_hits, rows[r].cpu_ns) == 0;
    }
    PyBuffer_Release(&view);
    if (!ok) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    db->total_hits = src->total_hits;
    db->overflow_hits = src->overflow_hits;
    if (index_labels(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return (PyObject *)out;
}

/* Reads an optional bytes-like of flags with exactly n entries. */
static int get_flags(PyObject *obj, size_t n, Py_buffer *view, const uint8_t **flags, const char *what)
{
    *flags = NULL;
    view->obj = NULL;
    if (obj == Py_None) {
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if ((size_t)view->len != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries, expected %zu", what, view->len, n);
        PyBuffer_Release(view);
        return -1;
    }
    *flags = view->buf;
    return 0;
}

/* select(thread_flags, label_flags) -> (mask or None, thread_hits, total,
 * gil, cpu_ns, label_hits): rows whose thread flag is set and whose label
 * flag is set (label_flags[0] is "no label", label_flags[i + 1] label i);
 * label_hits[0] counts the selected samples without a label, label_hits[i + 1]
 * those of label i. */
static PyObject *Snapshot_select(SnapshotObject *self, PyObject *args)
{
    PyObject *tf_obj, *lf_obj;
    int idle = -1; /* -1: every sample; 0: active ones only; 1: idle ones only */
    if (!PyArg_ParseTuple(args, "OO|i:select", &tf_obj, &lf_obj, &idle)) {
        return NULL;
    }
    if (idle < -1 || idle > 1) {
        PyErr_SetString(PyExc_ValueError, "idle must be -1 (all samples), 0 (active only) or 1 (idle only)");
        return NULL;
    }
    Py_buffer tv, lv;
    const uint8_t *tf, *lf;
    if (get_flags(tf_obj, self->db.threads.len, &tv, &tf, "thread_flags") < 0) {
        return NULL;
    }
    if (get_flags(lf_obj, (size_t)self->nlabels + 1, &lv, &lf, "label_flags") < 0) {
        release_mask(&tv);
        return NULL;
    }
    size_t nrows = self->db.counts.len, nthreads = self->db.threads.len;
    PyObject *mask = NULL, *hits_list = NULL, *labels_list = NULL, *result = NULL;
    uint64_t *thread_hits = PyMem_Calloc(nthreads + 1, sizeof(uint64_t));
    uint64_t *label_hits = PyMem_Calloc((size_t)self->nlabels + 1, sizeof(uint64_t));
    if (thread_hits == NULL || label_hits == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (tf != NULL || lf != NULL || idle >= 0) {
        mask = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nrows);
        if (mask == NULL) {
            goto done;
        }
    }
    /* Idle samples left out are still counted, per the same threads and labels. */
    uint64_t total = 0, gil = 0, cpu = 0, idle_total = 0, idle_hidden = 0;
    const oxp_count_t *rows = oxp_db_counts(&self->db);
    for (size_t r = 0; r < nrows; r++) {
        int keep = 1;
        if (tf != NULL && !tf[rows[r].thread]) {
            keep = 0;
        }
        if (keep && lf != NULL && !lf[label_index(self, rows[r].label) + 1]) {
            keep = 0;
        }
        if (keep && idle >= 0 && (int)rows[r].idle != idle) {
            idle_hidden += rows[r].idle ? rows[r].hits : 0;
            keep = 0;
        }
        if (mask != NULL) {
            PyBytes_AS_STRING(mask)[r] = (char)keep;
        }
        if (keep) {
            thread_hits[rows[r].thread] += rows[r].hits;
            label_hits[label_index(self, rows[r].label) + 1] += rows[r].hits;
            total += rows[r].hits;
            gil += rows[r].gil_hits;
            cpu += rows[r].cpu_ns;
            idle_total += rows[r].idle ? rows[r].hits : 0;
        }
    }
    hits_list = PyList_New((Py_ssize_t)nthreads);
    if (hits_list == NULL) {
        goto done;
    }
    for (size_t t = 0; t < nthreads; t++) {
        PyObject *v = PyLong_FromUnsignedLongLong(thread_hits[t]);
        if (v == NULL) {
            goto done;
        }
        PyList_SET_ITEM(hits_list, (Py_ssize_t)t, v);
    }
    labels_list = PyList_New((Py_ssize_t)self->nlabels + 1);
    if (labels_list == NULL) {
        goto done;
    }
    for (size_t l = 0; l <= self->nlabels; l++) {
        PyObject *v = PyLong_FromUnsignedLongLong(label_hits[l]);
        if (v == NULL) {
            goto done;
        }
        PyList_SET_ITEM(labels_list, (Py_ssize_t)l, v);
    }
    result = Py_BuildValue("(OOKKKOKK)", mask ? mask : Py_None, hits_list, (unsigned long long)total,
                           (unsigned long long)gil, (unsigned long long)cpu, labels_list,
                           (unsigned long long)idle_total, (unsigned long long)idle_hidden);
done:
    Py_XDECREF(mask);
    Py_XDECREF(hits_list);
    Py_XDECREF(labels_list);
    PyMem_Free(thread_hits);
    PyMem_Free(label_hits);
    release_mask(&tv);
    release_mask(&lv);
    return result;
}

/* pprof(mask, options) -> bytes (uncompressed Profile message). */
static PyObject *Snapshot_pprof(SnapshotObject *self, PyObject *args)
{
    PyObject *mask_obj, *opts_obj;
    if (!PyArg_ParseTuple(args, "OO!:pprof", &mask_obj, &PyDict_Type, &opts_obj)) {
        return NULL;
    }
    Py_buffer view;
    const uint8_t *mask;
    if (get_mask(self, mask_obj, &view, &mask) < 0) {
        return NULL;
    }
    oxp_pprof_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    PyObject *mode = PyDict_GetItemString(opts_obj, "mode"); /* borrowed */
    opts.cpu_mode = mode != NULL && PyUnicode_Check(mode) && PyUnicode_CompareWithASCIIString(mode, "cpu") == 0;
    const char *keys[3] = {"interval_ns", "time_nanos", "duration_nanos"};
    int64_t *dst[3] = {&opts.interval_ns, &opts.time_nanos, &opts.duration_nanos};
    for (int i = 0; i < 3; i++) {
        PyObject *v = PyDict_GetItemString(opts_obj, keys[i]);
        if (v != NULL) {
            *dst[i] = PyLong_AsLongLong(v);
            if (*dst[i] == -1 && PyErr_Occurred()) {
                release_mask(&view);
                return NULL;
            }
        }
    }
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = oxp_pprof_encode(&self->db, mask, &opts, &out, &out_len);
    Py_END_ALLOW_THREADS
    release_mask(&view);
    if (rc < 0) {
        return PyErr_NoMemory();
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_len);
    free(out);
    return result;
}

static PyMethodDef Snapshot_methods[] = {
    {"from_raw", (PyCFunction)Snapshot_from_raw, METH_VARARGS | METH_CLASS,
     "from_raw(functions, threads, labels, stacks, rows) -> Snapshot built from plain tuples."},
    {"stack", (PyCFunction)Snapshot_stack, METH_O, "stack(i) -> ((function, line), ...), leaf first."},
    {"select", (PyCFunction)Snapshot_select, METH_VARARGS,
     "select(thread_flags, label_flags, idle=-1) -> (mask, thread_hits, total, gil, cpu_ns, label_hits, "
     "idle, idle_left_out); idle: -1 every sample, 0 active ones, 1 idle ones."},
    {"aggregate", (PyCFunction)Snapshot_aggregate, METH_VARARGS,
     "aggregate(mask=None, groups=None, order=None, limit=-1) -> [(group, self_hits, total_hits)]."},
    {"line_hits", (PyCFunction)Snapshot_line_hits, METH_VARARGS,
     "line_hits(mask=None) -> [(function, line, self_hits)]."},
    {"hot_lines", (PyCFunction)Snapshot_hot_lines, METH_VARARGS, "hot_lines(mask=None) -> [line per function]."},
    {"strip_roots", (PyCFunction)Snapshot_strip_roots, METH_O,
     "strip_roots(flags) -> Snapshot without the flagged root-most frames."},
    {"folded", (PyCFunction)Snapshot_folded, METH_VARARGS, "folded(mask, names) -> folded stacks text."},
    {"flame", (PyCFunction)Snapshot_flame, METH_VARARGS, "flame(mask=None) -> nested call tree."},
    {"flame_json", (PyCFunction)Snapshot_flame_json, METH_VARARGS, "flame_json(mask=None) -> the tree as JSON."},
    {"flame_json_bounded", (PyCFunction)Snapshot_flame_json_bounded, METH_VARARGS,
     "flame_json_bounded(mask, max_nodes) -> (json, nodes, kept, cut_samples)."},
    {"pprof", (PyCFunction)Snapshot_pprof, METH_VARARGS, "pprof(mask, options) -> uncompressed pprof bytes."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Snapshot_getset[] = {
    {"functions", (getter)Snapshot_get_functions, NULL, "[(name, qualname, module, filename, firstlineno)]", NULL},
    {"threads", (getter)Snapshot_get_threads, NULL, "[(ident, native_id, name or None)]", NULL},
    {"labels", (getter)Snapshot_get_labels, NULL, "[label]", NULL},
    {"rows", (getter)Snapshot_get_rows, NULL, "[(thread, label or -1, stack, hits, gil_hits, cpu_ns, idle)]", NULL},
    {"nstacks", (getter)Snapshot_get_nstacks, NULL, "number of distinct stacks", NULL},
    {"total_hits", (getter)Snapshot_get_total, NULL, "samples recorded, overflow included", NULL},
    {"overflow_hits", (getter)Snapshot_get_overflow, NULL, "samples past the memory cap", NULL},
    {"thread_processes", (getter)Snapshot_get_thread_processes, NULL,
     "[process index of each thread in a merged snapshot, or -1]", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Snapshot_slots[] = {
    {Py_tp_dealloc, Snapshot_dealloc},
    {Py_tp_methods, Snapshot_methods},
    {Py_tp_getset, Snapshot_getset},
    {Py_tp_doc, "An immutable copy of a profile database."},
    {0, NULL},
};

static PyType_Spec Snapshot_spec = {
    .name = "ox_profile._engine.Snapshot",
    .basicsize = sizeof(SnapshotObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Snapshot_slots,
};

int oxp_snapshot_register(PyObject *module)
{
    snapshot_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Snapshot_spec, NULL);
    if (snapshot_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Snapshot", (PyObject *)snapshot_type) < 0) {
        return -1;
    }
    return 0;
}
