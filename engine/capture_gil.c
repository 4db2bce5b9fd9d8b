/* The portable capture: holds the GIL and walks threads and frames with the
 * public C API (PyThreadState_GetFrame, PyFrame_GetBack, ...).  Used by the
 * synchronous Sampler.run(), and by the sampler thread where the GIL-free
 * capture is not available or not wanted. */
#include "capture.h"

#include "labels.h"
#include "pystr.h"

#if PY_VERSION_HEX >= 0x030D0000
#define oxp_is_finalizing() Py_IsFinalizing()
#else
#define oxp_is_finalizing() _Py_IsFinalizing()
#endif

/* Interned "__name__" (Owned; created on first use with the GIL held). */
static PyObject *str_dunder_name;

static int guard_matches(const oxp_code_entry_t *e, PyCodeObject *code)
{
    return e->g_name == (uintptr_t)code->co_name && e->g_qualname == (uintptr_t)code->co_qualname &&
           e->g_filename == (uintptr_t)code->co_filename && e->g_firstlineno == code->co_firstlineno;
}

static int intern_obj(oxp_db_t *db, PyObject *str, oxp_id_t *out)
{
    Py_ssize_t len = 0;
    const char *utf8 = NULL;
    PyObject *owner = NULL; /* Owned: the escaped bytes, when escaping was needed */
    if (str != NULL && PyUnicode_Check(str)) {
        utf8 = oxp_pystr_utf8(str, &len, &owner); /* lone surrogates come out escaped */
        if (utf8 == NULL) {
            PyErr_Clear(); /* out of memory: fall back to "?" */
        }
    }
    if (utf8 == NULL) {
        utf8 = "?";
        len = 1;
    }
    int rc = oxp_db_intern(db, utf8, (size_t)len, out);
    Py_XDECREF(owner);
    return rc;
}

/* The database function of a frame's code; OXP_NO_ID when over budget.
 * *own: the code is ox_profile's own. */
static oxp_id_t resolve(oxp_codecache_t *cache, oxp_db_t *db, PyCodeObject *code, PyFrameObject *frame, int *own)
{
    oxp_code_entry_t *e = oxp_codecache_get(cache, (uintptr_t)code);
    if (e != NULL && e->db_generation == db->generation && e->func != OXP_NO_ID && guard_matches(e, code)) {
        *own = e->own;
        return e->func;
    }
    oxp_func_t f;
    PyObject *module = NULL;
    PyObject *globals = PyFrame_GetGlobals(frame); /* new reference */
    if (globals != NULL && PyDict_Check(globals)) {
        module = PyDict_GetItemWithError(globals, str_dunder_name); /* borrowed */
    }
    if (module == NULL) {
        PyErr_Clear();
    }
    int rc = intern_obj(db, code->co_name, &f.name) | intern_obj(db, code->co_qualname, &f.qualname) |
             intern_obj(db, module, &f.module) | intern_obj(db, code->co_filename, &f.filename);
    Py_XDECREF(globals);
    f.firstlineno = code->co_firstlineno;
    oxp_id_t id;
    *own = 0;
    if (rc != 0 || oxp_db_func(db, &f, &id) < 0) {
        return OXP_NO_ID;
    }
    e = oxp_codecache_slot(cache, (uintptr_t)code);
    e->g_name = (uintptr_t)code->co_name;
    e->g_qualname = (uintptr_t)code->co_qualname;
    e->g_filename = (uintptr_t)code->co_filename;
    e->g_firstlineno = code->co_firstlineno;
    e->func = id;
    e->db_generation = db->generation;
    Py_ssize_t flen = 0;
    const char *fname = PyUnicode_Check(code->co_filename) ? PyUnicode_AsUTF8AndSize(code->co_filename, &flen) : NULL;
    if (fname == NULL) {
        PyErr_Clear();
    }
    e->own = (uint8_t)(fname != NULL && oxp_code_is_own(fname, (size_t)flen));
    *own = e->own;
    return id;
}

int oxp_capture_gil_now(oxp_sampler_t *s, oxp_db_t *db, oxp_codecache_t *cache, oxp_scratch_t *scratch,
                        PyThreadState *skip, uint64_t tick)
{
    if (str_dunder_name == NULL) {
        str_dunder_name = PyUnicode_InternFromString("__name__");
        if (str_dunder_name == NULL) {
            return -1;
        }
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    /* No collection while we hold the database lock: a finalizer could call
     * back into the profiler. */
    int gc_was_enabled = PyGC_Disable();
    pthread_mutex_lock(&db->lock);
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t != NULL; t = PyThreadState_Next(t)) {
        if (t == skip) {
            continue;
        }
        const uint64_t native_id = oxp_native_alias((uint64_t)t->native_thread_id);
        if (s != NULL && !oxp_sampler_thread_here(s, native_id, tick)) {
            s->stats.gone_skipped++;
            continue;
        }
        PyFrameObject *frame = PyThreadState_GetFrame(t); /* new reference or NULL */
        if (frame == NULL) {
            if (PyErr_Occurred()) {
                PyErr_Clear();
            }
            continue;
        }
        uint64_t cpu_ns = 0;
        if (s != NULL && s->mode == OXP_MODE_CPU) {
            cpu_ns = oxp_sampler_cpu_delta(s, native_id, tick);
            if (cpu_ns == 0) {
                s->stats.idle_skipped++;
                Py_DECREF(frame);
                continue;
            }
        }
        uint32_t depth = 0, seen = 0;
        int over = 0, own_leaf = 0;
        oxp_frame_t *frames = oxp_scratch_frames(scratch, OXP_MAX_DEPTH);
        while (frame != NULL) {
            if (frames != NULL && depth < OXP_MAX_DEPTH) {
                PyCodeObject *code = PyFrame_GetCode(frame); /* new reference */
                int own = 0;
                oxp_id_t func = resolve(cache, db, code, frame, &own);
                over |= func == OXP_NO_ID;
                own_leaf |= own && seen == 0;
                /* ox_profile's own frames are left out of every stack. */
                if (!own) {
                    frames[depth].func = func;
                    frames[depth].line = PyFrame_GetLineNumber(frame);
                    depth++;
                }
                Py_DECREF(code);
            }
            seen++;
            PyFrameObject *back = PyFrame_GetBack(frame); /* new reference */
            Py_DECREF(frame);
            frame = back;
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
        }
        if (frames == NULL) {
            if (s != NULL) {
                s->stats.dropped[OXP_DROP_NO_MEMORY]++;
            }
            continue;
        }
        /* The sampler does not record a thread busy in ox_profile's own code
         * (stopping it, taking a snapshot); a synchronous capture (s NULL)
         * records its caller without those frames. */
        if (s != NULL && own_leaf) {
            s->stats.own_skipped++;
            continue;
        }
        if (depth == 0) {
            continue;
        }
        char label[OXP_LABEL_MAX + 1];
        size_t label_len = oxp_labels_of((uint64_t)t->thread_id, (uintptr_t)t->context, label);
        oxp_sample_info_t info = {0, 0, cpu_ns};
        if (s != NULL && s->mode == OXP_MODE_WALL) {
            int ran = oxp_sampler_ran(s, native_id, tick, 0);
            if (ran < 0) {
                s->stats.gone_skipped++;
                continue;
            }
            info.idle = !ran;
        }
        if (over) {
            oxp_db_add_overflow(db, &info);
            if (s != NULL) {
                s->stats.samples++;
            }
            continue;
        }
        if (s != NULL && seen > OXP_MAX_DEPTH) {
            s->stats.truncated++;
        }
        oxp_sampler_record_unlocked(s, db, (uint64_t)t->thread_id, native_id, label,
                                    label_len, frames, depth, &info);
    }
    pthread_mutex_unlock(&db->lock);
    if (gc_was_enabled) {
        PyGC_Enable();
    }
    return 0;
}

int64_t oxp_capture_gil_tick_from_thread(oxp_sampler_t *s, uint64_t tick)
{
    if (oxp_is_finalizing()) {
        pthread_mutex_lock(&s->db->lock);
        s->stats.dropped[OXP_DROP_NO_GIL]++;
        pthread_mutex_unlock(&s->db->lock);
        return 0;
    }
    if (s->own_tstate == NULL) {
        s->own_tstate = PyThreadState_New(s->interp);
        if (s->own_tstate == NULL) {
            pthread_mutex_lock(&s->db->lock);
            s->stats.dropped[OXP_DROP_NO_MEMORY]++;
            pthread_mutex_unlock(&s->db->lock);
            return 0;
        }
    }
    int64_t before = oxp_now_ns();
    PyEval_RestoreThread(s->own_tstate);
    int64_t waited = oxp_now_ns() - before;
    if (oxp_capture_gil_now(s, s->db, &s->cache, &s->scratch, s->own_tstate, tick) < 0) {
        PyErr_Clear();
    }
    PyEval_SaveThread();
    return waited;
}

void oxp_capture_gil_thread_exit(oxp_sampler_t *s)
{
    if (s->own_tstate == NULL) {
        return;
    }
    if (!oxp_is_finalizing()) {
        PyEval_RestoreThread(s->own_tstate);
        PyThreadState_Clear(s->own_tstate);
        PyThreadState_DeleteCurrent();
    }
    s->own_tstate = NULL;
}
