/* The Snapshot type (see snapshot.c). */
#ifndef OXP_SNAPSHOT_H
#define OXP_SNAPSHOT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "db.h"

/* Adds the Snapshot type to the module.  0 / -1 with an exception. */
int oxp_snapshot_register(PyObject *module);
/* A new Snapshot holding a copy of db (takes db->lock while copying). */
PyObject *oxp_snapshot_from_db(oxp_db_t *db);
/* A new Snapshot that takes over db (built by the caller, e.g. a merge; its
 * tables are moved, db is left empty).  NULL with an exception: db is freed. */
PyObject *oxp_snapshot_adopt(oxp_db_t *db);
/* The frozen database of a Snapshot, or NULL with a TypeError. */
const oxp_db_t *oxp_snapshot_db(PyObject *obj);

#endif
