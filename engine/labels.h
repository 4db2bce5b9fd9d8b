/* Per-thread labels (the Flask endpoint, or ox_profile.label("...")): set by
 * Python on the labelled thread, read by the sampler without the GIL. */
#ifndef OXP_LABELS_H
#define OXP_LABELS_H

#include <stddef.h>
#include <stdint.h>

#define OXP_LABEL_MAX 127 /* bytes of UTF-8 kept; longer labels are cut */

/* Sets (or with len 0, clears) the label of thread `ident`.  0, or -1 when
 * the table is full of labelled threads. */
int oxp_labels_set(uint64_t ident, const char *label, size_t len);
/* Copies the label of `ident` into buf (OXP_LABEL_MAX + 1 bytes); returns its
 * length, 0 for none.  Caller holds the lock (oxp_labels_lock). */
size_t oxp_labels_get_unlocked(uint64_t ident, char *buf);
/* The same, taking the lock itself. */
size_t oxp_labels_get(uint64_t ident, char *buf);
void oxp_labels_lock(void);
void oxp_labels_unlock(void);
/* fork: the child re-initialises the lock (the parent held it in prepare). */
void oxp_labels_after_fork_child(void);

#endif
