/* pprof encoder: turns rows of the profile database into an uncompressed
 * pprof `perftools.profiles.Profile` protobuf message (see profile.proto).
 * Plain C: no Python API, malloc-based, returns 0 on success and -1 on out of
 * memory.  The database must not change while it is being encoded (encode a
 * snapshot, or hold db->lock). */
#ifndef OXP_PPROF_H
#define OXP_PPROF_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

typedef struct {
    int cpu_mode;                    /* add a cpu/nanoseconds sample type */
    int64_t interval_ns;             /* period (wall/nanoseconds per sample) */
    int64_t time_nanos, duration_nanos;
    const char *const *thread_names; /* UTF-8 per thread index in db->threads (may be NULL entries) */
} oxp_pprof_opts_t;

/* Encode the rows of db->counts selected by mask (mask[i] != 0; mask NULL = all) as an
 * uncompressed pprof Profile message.  On success *out is malloc'd (caller frees) and 0 is
 * returned; -1 on out of memory.
 *
 * Layout: string_table[0] is ""; sample_type is samples/count, wall/nanoseconds (and
 * cpu/nanoseconds when opts->cpu_mode); one Sample per selected row with its locations leaf
 * first, values [hits, hits * interval_ns (, cpu_ns)] and labels thread (name), thread_id
 * (ident) and endpoint (the row's label, when it has one); one Function per database function
 * (id = index + 1), named module.qualname (system_name: the qualname); one Location per distinct (function, line), shared by samples.  A thread
 * with no name from opts or from the database is named "Thread-<native_id>".  opts may be
 * NULL (wall mode, no period, no times). */
int oxp_pprof_encode(const oxp_db_t *db, const uint8_t *mask, const oxp_pprof_opts_t *opts,
                     uint8_t **out, size_t *out_len);

#endif
