/* Labels (the endpoint of a request, or ox_profile.label("...")): set by
 * Python, read by the sampler without the GIL.  A label belongs to a thread
 * (keyed by its ident) or to an asyncio task (keyed by the contextvars
 * Context the task runs in, which is the thread's current context exactly
 * while one of the task's steps runs). */
#ifndef OXP_LABELS_H
#define OXP_LABELS_H

#include <stddef.h>
#include <stdint.h>

#define OXP_LABEL_MAX 127 /* bytes of UTF-8 kept; longer labels are cut */

/* The key of a thread's labels, and of a Context's. */
static inline uint64_t oxp_label_key_thread(uint64_t ident) { return ident & ~(1ULL << 63); }
static inline uint64_t oxp_label_key_context(uintptr_t context) { return (uint64_t)context | (1ULL << 63); }

/* Sets (or with len 0, clears) the label of `key`.  0, or -1 when the table
 * is full of labels. */
int oxp_labels_set(uint64_t key, const char *label, size_t len);
/* Copies the label of `key` into buf (OXP_LABEL_MAX + 1 bytes); returns its
 * length, 0 for none.  Caller holds the lock (oxp_labels_lock). */
size_t oxp_labels_get_unlocked(uint64_t key, char *buf);
/* The same, taking the lock itself. */
size_t oxp_labels_get(uint64_t key, char *buf);
/* The label a sample of a thread carries: its current Context's (`context`,
 * 0 for none) if it has one, else the thread's. */
size_t oxp_labels_of(uint64_t ident, uintptr_t context, char *buf);
void oxp_labels_lock(void);
void oxp_labels_unlock(void);
/* fork: the child re-initialises the lock (the parent held it in prepare). */
void oxp_labels_after_fork_child(void);

#endif
