/* ox_profile._engine: the module and its Database and Sampler types, the
 * per-thread label setter, and the process-wide fork and exit hooks.  A thin
 * layer: the work is in db.c, sampler.c, capture_*.c and snapshot.c. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "labels.h"
#include "linetable.h"
#include "module.h"
#include "pystr.h"
#include "saferead.h"
#include "sampler.h"
#include "snapshot.h"

/* -- Database ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    oxp_db_t db;
    int initialised;
    oxp_codecache_t cache; /* for capture_now; guarded by the GIL */
    oxp_scratch_t scratch; /* for capture_now; guarded by the GIL */
} DatabaseObject;

static PyTypeObject *database_type; /* Owned */
static PyTypeObject *sampler_type;  /* Owned */

static int parse_cap(PyObject *obj, size_t *out)
{
    if (obj == NULL || obj == Py_None) {
        *out = OXP_DB_DEFAULT_CAP;
        return 0;
    }
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "max_memory must be an int (bytes) or None, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < (long long)OXP_DB_MIN_CAP) {
        PyErr_Format(PyExc_ValueError, "max_memory must be at least %zu bytes, got %lld", (size_t)OXP_DB_MIN_CAP, v);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int Database_init(DatabaseObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_memory", NULL};
    PyObject *cap_obj = Py_None;
    size_t cap;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Database", kwlist, &cap_obj) || parse_cap(cap_obj, &cap) < 0) {
        return -1;
    }
    if (self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Database is already initialised");
        return -1;
    }
    if (oxp_db_init(&self->db, cap) < 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise the database lock");
        return -1;
    }
    if (oxp_codecache_init(&self->cache) < 0) {
        oxp_db_free(&self->db);
        PyErr_NoMemory();
        return -1;
    }
    self->initialised = 1;
    return 0;
}

static void Database_dealloc(DatabaseObject *self)
{
    if (self->initialised) {
        oxp_db_free(&self->db);
        oxp_codecache_free(&self->cache);
        PyMem_RawFree(self->scratch.frames);
    }
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int check_db(DatabaseObject *self)
{
    if (!self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Database.__init__ was not called");
        return -1;
    }
    return 0;
}

oxp_db_t *oxp_database_db(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, database_type)) {
        PyErr_Format(PyExc_TypeError, "expected a Database, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    DatabaseObject *self = (DatabaseObject *)obj;
    if (check_db(self) < 0) {
        return NULL;
    }
    return &self->db;
}

static PyObject *Database_snapshot(DatabaseObject *self, PyObject *unused)
{
    (void)unused;
    if (check_db(self) < 0) {
        return NULL;
    }
    return oxp_snapshot_from_db(&self->db);
}

static PyObject *Database_clear(DatabaseObject *self, PyObject *unused)
{
    (void)unused;
    if (check_db(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->db.lock);
    oxp_db_clear(&self->db);
    pthread_mutex_unlock(&self->db.lock);
    Py_RETURN_NONE;
}

static PyObject *Database_capture_now(DatabaseObject *self, PyObject *args)
{
    int include_self = 1;
    if (!PyArg_ParseTuple(args, "|p:capture_now", &include_self) || check_db(self) < 0) {
        return NULL;
    }
    PyThreadState *skip = include_self ? NULL : PyThreadState_Get();
    if (oxp_capture_gil_now(NULL, &self->db, &self->cache, &self->scratch, skip, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

typedef struct {
    unsigned long long ident;
    const char *name; /* UTF-8 borrowed from a str of the argument dict, or from owner */
    Py_ssize_t len;
    PyObject *owner;  /* Owned: escaped bytes of a name that needed it, or NULL */
} named_t;

static void release_names(named_t *named, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_XDECREF(named[k].owner);
    }
    PyMem_Free(named);
}

static int cmp_named(const void *a, const void *b)
{
    unsigned long long x = ((const named_t *)a)->ident, y = ((const named_t *)b)->ident;
    return x < y ? -1 : (x > y);
}

/* set_thread_names({ident: name}): names every thread row with that ident. */
static PyObject *Database_set_thread_names(DatabaseObject *self, PyObject *mapping)
{
    if (check_db(self) < 0) {
        return NULL;
    }
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "set_thread_names needs a dict {ident: name}");
        return NULL;
    }
    /* Convert first (may raise), then write under the lock. */
    Py_ssize_t n = PyDict_Size(mapping), pos = 0, i = 0;
    named_t *named = PyMem_Malloc(((size_t)n + 1) * sizeof(named_t));
    PyObject *key, *value;
    if (named == NULL) {
        return PyErr_NoMemory();
    }
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        named[i].ident = PyLong_AsUnsignedLongLong(key);
        if (PyErr_Occurred()) {
            goto error;
        }
        if (!PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "thread names must be str");
            goto error;
        }
        named[i].name = oxp_pystr_utf8(value, &named[i].len, &named[i].owner);
        if (named[i].name == NULL) {
            goto error;
        }
        i++;
    }
    /* Sorted by ident, so each thread finds its name by binary search. */
    qsort(named, (size_t)i, sizeof(named_t), cmp_named);
    pthread_mutex_lock(&self->db.lock);
    const oxp_thread_t *threads = oxp_db_threads(&self->db);
    for (size_t t = 0; t < self->db.threads.len; t++) {
        named_t probe = {threads[t].ident, NULL, 0, NULL};
        const named_t *hit = bsearch(&probe, named, (size_t)i, sizeof(named_t), cmp_named);
        if (hit != NULL) {
            (void)oxp_db_thread_set_name(&self->db, (oxp_id_t)t, hit->name, (size_t)hit->len);
        }
    }
    pthread_mutex_unlock(&self->db.lock);
    release_names(named, i);
    Py_RETURN_NONE;
error:
    release_names(named, i);
    return NULL;
}

static PyObject *Database_info(DatabaseObject *self, PyObject *unused)
{
    (void)unused;
    if (check_db(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->db.lock);
    size_t bytes = self->db.bytes, cap = self->db.cap_bytes, stacks = self->db.stacks.len;
    size_t funcs = self->db.funcs.len, rows = self->db.counts.len;
    uint64_t total = self->db.total_hits, overflow = self->db.overflow_hits;
    pthread_mutex_unlock(&self->db.lock);
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:K,s:K}", "memory_bytes", (Py_ssize_t)bytes, "memory_cap",
                         (Py_ssize_t)cap, "stacks", (Py_ssize_t)stacks, "functions", (Py_ssize_t)funcs, "rows",
                         (Py_ssize_t)rows, "total_hits", (unsigned long long)total, "overflow_samples",
                         (unsigned long long)overflow);
}

/* Samples recorded per thread so far, summed over the rows under the lock (no
 * snapshot): {ident: hits}.  Threads that share an ident (one ended, the OS
 * reused its ident) are summed together. */
static PyObject *Database_thread_hits(DatabaseObject *self, PyObject *unused)
{
    (void)unused;
    if (check_db(self) < 0) {
        return NULL;
    }
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&self->db.lock);
    size_t nthreads = self->db.threads.len, nrows = self->db.counts.len;
    uint64_t *hits = calloc(nthreads + 1, sizeof(uint64_t));
    uint64_t *idents = malloc((nthreads + 1) * sizeof(uint64_t));
    if (hits != NULL && idents != NULL) {
        const oxp_count_t *rows = oxp_db_counts(&self->db);
        const oxp_thread_t *threads = oxp_db_threads(&self->db);
        for (size_t r = 0; r < nrows; r++) {
            if (rows[r].thread < nthreads) {
                hits[rows[r].thread] += rows[r].hits;
            }
        }
        for (size_t t = 0; t < nthreads; t++) {
            idents[t] = threads[t].ident;
        }
    }
    pthread_mutex_unlock(&self->db.lock);
    if (hits == NULL || idents == NULL) {
        free(hits);
        free(idents);
        Py_DECREF(result);
        return PyErr_NoMemory();
    }
    for (size_t t = 0; t < nthreads; t++) {
        PyObject *key = PyLong_FromUnsignedLongLong(idents[t]);
        PyObject *old = key ? PyDict_GetItemWithError(result, key) : NULL; /* borrowed */
        unsigned long long sum = hits[t];
        if (old != NULL) {
            sum += PyLong_AsUnsignedLongLong(old);
        }
        PyObject *value = (key != NULL && !PyErr_Occurred()) ? PyLong_FromUnsignedLongLong(sum) : NULL;
        int failed = value == NULL || PyDict_SetItem(result, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed) {
            free(hits);
            free(idents);
            Py_DECREF(result);
            return NULL;
        }
    }
    free(hits);
    free(idents);
    return result;
}

static PyMethodDef Database_methods[] = {
    {"snapshot", (PyCFunction)Database_snapshot, METH_NOARGS, "An immutable copy of the data (a Snapshot)."},
    {"clear", (PyCFunction)Database_clear, METH_NOARGS, "Forget everything recorded."},
    {"capture_now", (PyCFunction)Database_capture_now, METH_VARARGS,
     "capture_now(include_self=True): record every thread's stack now (holds the GIL)."},
    {"set_thread_names", (PyCFunction)Database_set_thread_names, METH_O, "Name threads: {ident: name}."},
    {"info", (PyCFunction)Database_info, METH_NOARGS, "Sizes: memory, stacks, functions, samples."},
    {"thread_hits", (PyCFunction)Database_thread_hits, METH_NOARGS, "Samples per thread so far: {ident: hits}."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Database_slots[] = {
    {Py_tp_init, Database_init},
    {Py_tp_dealloc, Database_dealloc},
    {Py_tp_methods, Database_methods},
    {Py_tp_doc, "Database(max_memory=None): interned stacks and hit counts, bounded in memory."},
    {0, NULL},
};

static PyType_Spec Database_spec = {
    .name = "ox_profile._engine.Database",
    .basicsize = sizeof(DatabaseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Database_slots,
};

/* -- Sampler ------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    oxp_sampler_t s;
    int initialised;
    PyObject *database; /* Owned: the Database whose db the sampler writes. */
    const char *backend_note; /* static string: why the backend was chosen */
    double started_at;  /* time.time() at start, 0 before */
} SamplerObject;

static int parse_interval(PyObject *obj, int64_t *out)
{
    if (!PyFloat_Check(obj) && !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "interval must be a number of seconds, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!isfinite(v) || v * 1e9 < (double)OXP_MIN_INTERVAL_NS || v * 1e9 > (double)OXP_MAX_INTERVAL_NS) {
        PyErr_Format(PyExc_ValueError, "interval must be between 50e-6 and 10 seconds, got %R", obj);
        return -1;
    }
    *out = (int64_t)llround(v * 1e9);
    return 0;
}

static int Sampler_init(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"database", "interval", "mode", "backend", NULL};
    PyObject *db_obj, *interval_obj = NULL;
    const char *mode = "wall", *backend = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|Oss:Sampler", kwlist, database_type, &db_obj, &interval_obj,
                                     &mode, &backend)) {
        return -1;
    }
    if (self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler is already initialised");
        return -1;
    }
    int64_t interval_ns = 1000000;
    if (interval_obj != NULL && parse_interval(interval_obj, &interval_ns) < 0) {
        return -1;
    }
    oxp_mode_t m;
    if (strcmp(mode, "wall") == 0) {
        m = OXP_MODE_WALL;
    } else if (strcmp(mode, "cpu") == 0) {
        m = OXP_MODE_CPU;
    } else {
        PyErr_Format(PyExc_ValueError, "mode must be 'wall' or 'cpu', not '%s'", mode);
        return -1;
    }
    const char *why = NULL;
    int nogil_ok = oxp_capture_nogil_available(&why);
    oxp_backend_t b;
    if (strcmp(backend, "auto") == 0) {
        b = nogil_ok ? OXP_BACKEND_NOGIL : OXP_BACKEND_GIL;
        self->backend_note = nogil_ok ? "auto: GIL-free capture available" : why;
    } else if (strcmp(backend, "nogil") == 0) {
        if (!nogil_ok) {
            PyErr_Format(PyExc_RuntimeError, "backend 'nogil' is not available: %s", why);
            return -1;
        }
        b = OXP_BACKEND_NOGIL;
        self->backend_note = "requested";
    } else if (strcmp(backend, "gil") == 0) {
        b = OXP_BACKEND_GIL;
        self->backend_note = "requested";
    } else {
        PyErr_Format(PyExc_ValueError, "backend must be 'auto', 'nogil' or 'gil', not '%s'", backend);
        return -1;
    }
    DatabaseObject *dbo = (DatabaseObject *)db_obj;
    if (check_db(dbo) < 0) {
        return -1;
    }
    if (oxp_sampler_init(&self->s, &dbo->db, m, b, interval_ns) < 0) {
        return -1;
    }
    self->database = Py_NewRef(db_obj);
    self->initialised = 1;
    return 0;
}

static void Sampler_dealloc(SamplerObject *self)
{
    if (self->initialised) {
        oxp_sampler_fini(&self->s);
    }
    Py_CLEAR(self->database);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int check_sampler(SamplerObject *self)
{
    if (!self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler.__init__ was not called");
        return -1;
    }
    return 0;
}

static PyObject *Sampler_start(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"paused", NULL};
    int paused = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:start", kwlist, &paused) || check_sampler(self) < 0) {
        return NULL;
    }
    if (oxp_sampler_start(&self->s, paused) < 0) {
        return NULL;
    }
    PyObject *time_mod = PyImport_ImportModule("time");
    if (time_mod != NULL) {
        PyObject *now = PyObject_CallMethod(time_mod, "time", NULL);
        if (now != NULL) {
            self->started_at = PyFloat_AsDouble(now);
            Py_DECREF(now);
        }
        Py_DECREF(time_mod);
    }
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyObject *Sampler_stop(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    oxp_sampler_stop(&self->s);
    Py_RETURN_NONE;
}

static PyObject *Sampler_pause(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    oxp_sampler_set_paused(&self->s, 1);
    Py_RETURN_NONE;
}

static PyObject *Sampler_resume(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    oxp_sampler_set_paused(&self->s, 0);
    Py_RETURN_NONE;
}

static PyObject *Sampler_set_interval(SamplerObject *self, PyObject *arg)
{
    int64_t ns;
    if (check_sampler(self) < 0 || parse_interval(arg, &ns) < 0) {
        return NULL;
    }
    oxp_sampler_set_interval(&self->s, ns);
    Py_RETURN_NONE;
}

static PyObject *Sampler_is_alive(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(oxp_sampler_is_alive(&self->s));
}

static PyObject *Sampler_is_paused(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->s.state_lock);
    int paused = self->s.paused;
    pthread_mutex_unlock(&self->s.state_lock);
    return PyBool_FromLong(paused);
}

/* _take_fork_state() -> None, or whether the sampler was paused: in a forked
 * child, when its thread ran in the parent (once; the flag is cleared). */
static PyObject *Sampler_take_fork_state(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->s.state_lock);
    int rearm = self->s.rearm, paused = self->s.rearm_paused;
    self->s.rearm = 0;
    pthread_mutex_unlock(&self->s.state_lock);
    if (!rearm) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(paused);
}

static PyObject *Sampler_stats(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->s.state_lock);
    int64_t interval_ns = self->s.interval_ns;
    int paused = self->s.paused, forked = self->s.forked;
    int alive = self->s.thread_started && self->s.state == OXP_RUNNING;
    pthread_mutex_unlock(&self->s.state_lock);
    oxp_db_t *db = self->s.db;
    pthread_mutex_lock(&db->lock);
    oxp_stats_t st = self->s.stats;
    uint64_t sampler_tid = self->s.sampler_native_id;
    int guarded = self->s.guarded;
    size_t bytes = db->bytes, cap = db->cap_bytes;
    uint64_t overflow = db->overflow_hits;
    pthread_mutex_unlock(&db->lock);
    if (alive && sampler_tid != 0) {
        uint64_t now_cpu = oxp_thread_cpu_ns(sampler_tid); /* the running thread's CPU so far */
        if (now_cpu != 0) {
            st.thread_cpu_ns = now_cpu;
        }
    }

    double mean = st.interval_n ? st.interval_mean_ns / 1e9 : 0.0;
    double stdev = st.interval_n > 1 ? sqrt(st.interval_m2 / (double)st.interval_n) / 1e9 : 0.0;
    double span = st.ticks > 1 ? (double)(st.last_tick_ns - st.first_tick_ns - st.paused_ns) / 1e9 : 0.0;
    double rate = span > 0 ? (double)(st.ticks - 1) / span : 0.0;
    PyObject *dropped = PyDict_New();
    if (dropped == NULL) {
        return NULL;
    }
    uint64_t total_dropped = 0;
    for (int i = 0; i < OXP_DROP_NREASONS; i++) {
        total_dropped += st.dropped[i];
        PyObject *v = PyLong_FromUnsignedLongLong(st.dropped[i]);
        if (v == NULL || PyDict_SetItemString(dropped, oxp_drop_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(dropped);
            return NULL;
        }
        Py_DECREF(v);
    }
    const char *reader = self->s.backend == OXP_BACKEND_NOGIL ? oxp_saferead_name(guarded) : "C API";
    return Py_BuildValue(
        "{s:s,s:s,s:s,s:s,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:d,s:d,s:d,s:d,s:d,s:N,s:K,s:n,s:n,s:K,s:d,s:d,s:O,s:O,"
        "s:O,s:K,s:K,s:K,s:d,s:K,s:d,s:d,s:K,s:K,s:K,s:K}",
        "mode", self->s.mode == OXP_MODE_CPU ? "cpu" : "wall", "backend",
        self->s.backend == OXP_BACKEND_NOGIL ? "nogil" : "gil", "backend_note",
        self->backend_note ? self->backend_note : "", "reader", reader, "interval", (double)interval_ns / 1e9,
        "ticks", (unsigned long long)st.ticks, "samples", (unsigned long long)st.samples, "gil_samples",
        (unsigned long long)st.gil_samples, "late_wakeups", (unsigned long long)st.late_wakeups, "missed_ticks",
        (unsigned long long)st.missed_ticks, "truncated", (unsigned long long)st.truncated, "idle_skipped",
        (unsigned long long)st.idle_skipped, "mean_interval", mean, "stdev_interval", stdev, "rate_hz", rate,
        "capture_mean_us", st.ticks ? (double)st.capture_total_ns / (double)st.ticks / 1e3 : 0.0,
        "capture_max_us", (double)st.capture_max_ns / 1e3, "dropped", dropped, "dropped_total",
        (unsigned long long)total_dropped, "memory_bytes", (Py_ssize_t)bytes, "memory_cap", (Py_ssize_t)cap,
        "overflow_samples", (unsigned long long)overflow, "started_at", self->started_at, "duration", span,
        "paused", paused ? Py_True : Py_False, "alive", alive ? Py_True : Py_False, "forked",
        forked ? Py_True : Py_False, "sampler_native_id", (unsigned long long)sampler_tid, "code_cache_misses",
        (unsigned long long)st.cache_misses, "retried", (unsigned long long)st.retried,
        "gil_wait_mean_us", st.ticks ? (double)st.gil_wait_total_ns / (double)st.ticks / 1e3 : 0.0, "memo_hits",
        (unsigned long long)st.memo_hits, "sampler_cpu_s", (double)st.thread_cpu_ns / 1e9, "sampler_cpu_percent",
        span > 0 ? 100.0 * (double)st.thread_cpu_ns / 1e9 / span : 0.0, "read_faults",
        (unsigned long long)oxp_saferead_faults(), "own_skipped", (unsigned long long)st.own_skipped,
        "gone_skipped", (unsigned long long)st.gone_skipped, "idle_samples", (unsigned long long)st.idle_samples);
}

static PyObject *Sampler_reset_stats(SamplerObject *self, PyObject *unused)
{
    (void)unused;
    if (check_sampler(self) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&self->s.db->lock);
    memset(&self->s.stats, 0, sizeof(self->s.stats));
    pthread_mutex_unlock(&self->s.db->lock);
    Py_RETURN_NONE;
}

static PyMethodDef Sampler_methods[] = {
    {"start", (PyCFunction)(void (*)(void))Sampler_start, METH_VARARGS | METH_KEYWORDS,
     "start(paused=False): start the sampler thread."},
    {"stop", (PyCFunction)Sampler_stop, METH_NOARGS, "Stop and join the sampler thread."},
    {"pause", (PyCFunction)Sampler_pause, METH_NOARGS, "Stop taking samples; the thread stays."},
    {"resume", (PyCFunction)Sampler_resume, METH_NOARGS, "Take samples again."},
    {"set_interval", (PyCFunction)Sampler_set_interval, METH_O, "set_interval(seconds)"},
    {"is_alive", (PyCFunction)Sampler_is_alive, METH_NOARGS, "Whether the sampler thread runs."},
    {"is_paused", (PyCFunction)Sampler_is_paused, METH_NOARGS, "Whether sampling is paused."},
    {"stats", (PyCFunction)Sampler_stats, METH_NOARGS, "Statistics of the sampler, as a dict."},
    {"reset_stats", (PyCFunction)Sampler_reset_stats, METH_NOARGS, "Zero the statistics."},
    {"_take_fork_state", (PyCFunction)Sampler_take_fork_state, METH_NOARGS,
     "In a forked child: None, or whether the sampler (running in the parent) was paused; once."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Sampler_slots[] = {
    {Py_tp_init, Sampler_init},
    {Py_tp_dealloc, Sampler_dealloc},
    {Py_tp_methods, Sampler_methods},
    {Py_tp_doc, "Sampler(database, interval=0.001, mode='wall', backend='auto'): a native sampler thread."},
    {0, NULL},
};

static PyType_Spec Sampler_spec = {
    .name = "ox_profile._engine.Sampler",
    .basicsize = sizeof(SamplerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Sampler_slots,
};

/* -- module functions ---------------------------------------------------- */

/* The label key of the calling thread, or with `task`, of the contextvars
 * Context it runs in (an asyncio task's, during its steps). */
static uint64_t current_label_key(int task)
{
    PyThreadState *ts = PyThreadState_Get();
    if (task && ts->context != NULL) {
        return oxp_label_key_context((uintptr_t)ts->context);
    }
    return oxp_label_key_thread((uint64_t)PyThread_get_thread_ident());
}

/* set_label(name or None, task=False) */
static PyObject *engine_set_label(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    static char *kwlist[] = {"name", "task", NULL};
    PyObject *arg;
    int task = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:set_label", kwlist, &arg, &task)) {
        return NULL;
    }
    uint64_t key = current_label_key(task);
    if (arg == Py_None) {
        (void)oxp_labels_set(key, "", 0);
        Py_RETURN_NONE;
    }
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "label must be str or None, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t len;
    PyObject *owner; /* Owned: the escaped bytes of a label with lone surrogates */
    const char *s = oxp_pystr_utf8(arg, &len, &owner);
    if (s == NULL) {
        return NULL;
    }
    int rc = oxp_labels_set(key, s, (size_t)len);
    Py_XDECREF(owner);
    if (rc < 0) {
        PyErr_SetString(PyExc_RuntimeError, "too many labelled threads and tasks (the label table is full)");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* get_label(task=False) */
static PyObject *engine_get_label(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    static char *kwlist[] = {"task", NULL};
    int task = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:get_label", kwlist, &task)) {
        return NULL;
    }
    char buf[OXP_LABEL_MAX + 1];
    size_t len = oxp_labels_get(current_label_key(task), buf);
    if (len == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)len, "replace");
}

/* _alias_native_id(stale, real): this thread's state carries a kernel id
 * from before a fork (sampler.h, oxp_native_alias). */
static PyObject *engine_alias_native_id(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long long stale, real;
    if (!PyArg_ParseTuple(args, "KK:_alias_native_id", &stale, &real)) {
        return NULL;
    }
    oxp_native_alias_set(stale, real);
    Py_RETURN_NONE;
}

static PyObject *engine_shutdown(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    oxp_registry_stop_all();
    Py_RETURN_NONE;
}

static PyObject *engine_nogil_available(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    const char *why = "";
    int ok = oxp_capture_nogil_available(&why);
    return Py_BuildValue("(Os)", ok ? Py_True : Py_False, ok ? oxp_saferead_name(1) : why);
}

/* _saferead(address, n): reads memory the way the capture does, on the
 * calling thread (bytes, or None when unreadable), for tests. */
static PyObject *engine_saferead(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long long addr;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Kn:_saferead", &addr, &n)) {
        return NULL;
    }
    if (n < 0 || n > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "n must be between 0 and 1 MiB");
        return NULL;
    }
    const char *why = "";
    if (!oxp_capture_nogil_available(&why)) {
        PyErr_Format(PyExc_RuntimeError, "no reader: %s", why);
        return NULL;
    }
    char *buf = PyMem_Malloc((size_t)n + 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    (void)oxp_saferead_install();
    /* As on a sampler thread: only the fault signals get through meanwhile. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    oxp_saferead_thread_begin();
    oxp_saferead_tick();
    int rc = oxp_saferead(buf, (uintptr_t)addr, (size_t)n);
    oxp_saferead_thread_end();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    PyObject *out = rc == 0 ? PyBytes_FromStringAndSize(buf, n) : Py_NewRef(Py_None);
    PyMem_Free(buf);
    return out;
}

static PyObject *engine_saferead_faults(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(oxp_saferead_faults());
}

/* _addr2line(code, lasti): our line-table decoder, for tests against
 * PyCode_Addr2Line. */
static PyObject *engine_addr2line(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *code;
    int lasti;
    if (!PyArg_ParseTuple(args, "O!i:_addr2line", &PyCode_Type, &code, &lasti)) {
        return NULL;
    }
    /* Through the code object's Python attributes: the public way. */
    PyObject *table = PyObject_GetAttrString(code, "co_linetable");
    PyObject *first = table ? PyObject_GetAttrString(code, "co_firstlineno") : NULL;
    long firstlineno = first ? PyLong_AsLong(first) : -1;
    PyObject *result = NULL;
    if (first == NULL || (firstlineno == -1 && PyErr_Occurred())) {
        goto done;
    }
    if (!PyBytes_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "co_linetable is not bytes");
        goto done;
    }
    result = PyLong_FromLong(oxp_linetable_line((const uint8_t *)PyBytes_AS_STRING(table),
                                                (size_t)PyBytes_GET_SIZE(table), (int32_t)firstlineno, lasti));
done:
    Py_XDECREF(table);
    Py_XDECREF(first);
    return result;
}

/* _set_own_prefix(directory): frames of code under it are ox_profile's own
 * and are left out of samples.  Called once at import, before any sampler. */
static PyObject *engine_set_own_prefix(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_ssize_t len;
    const char *prefix = PyUnicode_Check(arg) ? PyUnicode_AsUTF8AndSize(arg, &len) : NULL;
    if (prefix == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "_set_own_prefix needs a str");
        }
        return NULL;
    }
    if (oxp_codecache_set_own_prefix(prefix, (size_t)len) < 0) {
        PyErr_SetString(PyExc_ValueError, "the package directory is empty or too long");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _debug_offsets(None or bytes): the layout check against _Py_DebugOffsets,
 * for tests (capture.h). */
static PyObject *engine_debug_offsets(PyObject *module, PyObject *raw)
{
    (void)module;
    return oxp_capture_nogil_debug_offsets(raw);
}

static PyMethodDef engine_methods[] = {
    {"set_label", (PyCFunction)(void (*)(void))engine_set_label, METH_VARARGS | METH_KEYWORDS,
     "set_label(name or None, task=False): label this thread's samples (with task, the current asyncio "
     "task's: those taken while the Context it runs in is current)."},
    {"get_label", (PyCFunction)(void (*)(void))engine_get_label, METH_VARARGS | METH_KEYWORDS,
     "get_label(task=False): this thread's (or the current task's) label, or None."},
    {"_shutdown", engine_shutdown, METH_NOARGS, "Stop every sampler (registered with atexit)."},
    {"_alias_native_id", engine_alias_native_id, METH_VARARGS,
     "_alias_native_id(stale, real): a thread state keeps a kernel id from before a fork (after a fork made in C)."},
    {"nogil_available", engine_nogil_available, METH_NOARGS, "(available, reader or reason)."},
    {"_saferead", engine_saferead, METH_VARARGS, "_saferead(address, n) -> bytes or None (test helper)."},
    {"_read_faults", engine_saferead_faults, METH_NOARGS, "Faults caught by the direct reader (process-wide)."},
    {"_addr2line", engine_addr2line, METH_VARARGS, "_addr2line(code, lasti) -> line (test helper)."},
    {"_set_own_prefix", engine_set_own_prefix, METH_O,
     "_set_own_prefix(directory): code under it is ox_profile's own (left out of samples)."},
    {"_debug_offsets", engine_debug_offsets, METH_O,
     "_debug_offsets(None) -> [(field, compiled value)]; _debug_offsets(bytes) -> None or why (test helper)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT, "ox_profile._engine", "The C engine of ox_profile.", -1, engine_methods,
    NULL, NULL, NULL, NULL,
};

/* Whether the fork handlers are installed (set once, GIL held, at import). */
static int atfork_installed;

PyMODINIT_FUNC PyInit__engine(void)
{
    PyObject *m = PyModule_Create(&engine_module);
    if (m == NULL) {
        return NULL;
    }
    database_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Database_spec, NULL);
    if (database_type == NULL || PyModule_AddObjectRef(m, "Database", (PyObject *)database_type) < 0) {
        goto error;
    }
    sampler_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Sampler_spec, NULL);
    if (sampler_type == NULL || PyModule_AddObjectRef(m, "Sampler", (PyObject *)sampler_type) < 0) {
        goto error;
    }
    if (oxp_snapshot_register(m) < 0 || oxp_share_register(m) < 0) {
        goto error;
    }
    const char *why = "";
    int nogil = oxp_capture_nogil_available(&why);
#ifdef OXP_HAVE_NOGIL
    const int compiled = 1;
#else
    const int compiled = 0;
#endif
    const char *layout = oxp_capture_nogil_layout();
    PyObject *info = Py_BuildValue("{s:O,s:O,s:s,s:s,s:z,s:i,s:n}", "nogil_compiled", compiled ? Py_True : Py_False,
                                   "nogil_available", nogil ? Py_True : Py_False, "reader",
                                   nogil ? oxp_saferead_name(1) : why, "nogil_note", nogil ? "" : why, "layout",
                                   layout, "max_depth", OXP_MAX_DEPTH, "default_max_memory",
                                   (Py_ssize_t)OXP_DB_DEFAULT_CAP);
    if (info == NULL || PyModule_AddObject(m, "BUILD_INFO", info) < 0) {
        Py_XDECREF(info);
        goto error;
    }
    PyObject *reasons = PyTuple_New(OXP_DROP_NREASONS);
    for (Py_ssize_t i = 0; reasons != NULL && i < OXP_DROP_NREASONS; i++) {
        PyObject *name = PyUnicode_FromString(oxp_drop_names[i]);
        if (name == NULL) {
            Py_CLEAR(reasons);
            break;
        }
        PyTuple_SET_ITEM(reasons, i, name);
    }
    if (reasons == NULL || PyModule_AddObject(m, "DROP_REASONS", reasons) < 0) {
        Py_XDECREF(reasons);
        goto error;
    }
    if (!atfork_installed) {
        if (pthread_atfork(oxp_atfork_prepare, oxp_atfork_parent, oxp_atfork_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            goto error;
        }
        atfork_installed = 1;
    }
    /* Stop the sampler threads while the interpreter is still whole. */
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *shutdown = atexit ? PyObject_GetAttrString(m, "_shutdown") : NULL;
    PyObject *res = shutdown ? PyObject_CallMethod(atexit, "register", "O", shutdown) : NULL;
    Py_XDECREF(atexit);
    Py_XDECREF(shutdown);
    if (res == NULL) {
        goto error;
    }
    Py_DECREF(res);
    return m;
error:
    Py_DECREF(m);
    return NULL;
}
