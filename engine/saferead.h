/* Reading this process's memory in a way that cannot crash it when a pointer
 * has gone stale: process_vm_readv on our own pid, else pread on
 * /proc/self/mem.  Used by the GIL-free capture for everything it reads. */
#ifndef OXP_SAFEREAD_H
#define OXP_SAFEREAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef enum { OXP_READER_NONE = 0, OXP_READER_VM = 1, OXP_READER_PROCMEM = 2 } oxp_reader_t;

/* Picks a reader (OX_PROFILE_READER=vm|procmem forces one).  0 / -1. */
int oxp_saferead_init(void);
oxp_reader_t oxp_saferead_kind(void);
const char *oxp_saferead_name(void);
/* Copies n bytes at address src into dst.  0, or -1 if any byte is unreadable. */
int oxp_saferead(void *dst, uintptr_t src, size_t n);
/* Reads up to `count` (local, remote) pairs, stopping at the first that
 * fails; returns how many were read completely. */
size_t oxp_safereadv(const struct iovec *local, const struct iovec *remote, size_t count);
void oxp_saferead_after_fork_child(void);

#endif
