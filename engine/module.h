/* What module.c offers the other binding files. */
#ifndef OXP_MODULE_H
#define OXP_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "db.h"

/* The database of a Database object, or NULL with a TypeError (or a
 * RuntimeError when it was never initialised). */
oxp_db_t *oxp_database_db(PyObject *obj);

/* Adds the shared-profile functions to the module (sharemod.c). 0 / -1. */
int oxp_share_register(PyObject *module);

#endif
