/* The UTF-8 of a str from the profiled program (thread names, labels,
 * function and file names), for the database.  A str that cannot be encoded
 * (lone surrogates, as os.fsdecode makes of undecodable bytes) is escaped as
 * Python's "backslashreplace" does: "job-\udcff" is kept as the ten
 * characters `job-\udcff`, so it can be shown and written anywhere. */
#ifndef OXP_PYSTR_H
#define OXP_PYSTR_H

#include <Python.h>

/* Returns the UTF-8 of `str` and its length in *len, or NULL with an
 * exception (out of memory).  When escaping was needed, *owner is set to a
 * new reference (Owned by the caller, who releases it once done with the
 * bytes); otherwise *owner is NULL and the bytes are borrowed from `str`.
 * GIL held. */
static inline const char *oxp_pystr_utf8(PyObject *str, Py_ssize_t *len, PyObject **owner)
{
    *owner = NULL;
    const char *utf8 = PyUnicode_AsUTF8AndSize(str, len);
    if (utf8 != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        return utf8;
    }
    PyErr_Clear();
    *owner = PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace");
    if (*owner == NULL) {
        return NULL;
    }
    *len = PyBytes_GET_SIZE(*owner);
    return PyBytes_AS_STRING(*owner);
}

#endif
