/* Reading this process's memory in a way that cannot crash it when a pointer
 * has gone stale.  Used by the GIL-free capture for everything it reads.
 *
 * Three readers:
 *   direct   a plain copy on a sampler thread, guarded by a SIGSEGV/SIGBUS
 *            handler that turns a fault during the copy into a failed read
 *            (faults anywhere else go on to the handler that was there
 *            before, or to the default action).  No system call per read.
 *   vm       process_vm_readv on our own pid.
 *   procmem  pread on /proc/self/mem.
 * direct is the default where it can be installed; a thread without a
 * guard, or a tick where someone else's handler has replaced ours, reads
 * with the fallback (vm, else procmem).  OX_PROFILE_READER=direct|vm|procmem
 * restricts the choice. */
#ifndef OXP_SAFEREAD_H
#define OXP_SAFEREAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef enum {
    OXP_READER_NONE = 0,
    OXP_READER_VM = 1,
    OXP_READER_PROCMEM = 2,
    OXP_READER_DIRECT = 3
} oxp_reader_t;

/* Picks the readers (GIL held, before any sampler runs).  0 / -1. */
int oxp_saferead_init(void);
/* The reader a sampler thread uses now: with a guard (`guarded`), direct
 * until our fault handler is replaced, then the fallback; without one, the
 * fallback. */
const char *oxp_saferead_name(int guarded);
/* Installs the fault handler for the direct reader, once per process
 * (GIL held).  Without it every read uses the fallback.  0 / -1. */
int oxp_saferead_install(void);
/* Unblocks SIGSEGV and SIGBUS in the calling thread: a sampler thread, made
 * with every signal blocked, calls it first, so that a fault in a guarded
 * copy reaches our handler and a real crash reaches faulthandler (a blocked
 * fault signal kills with the default action). */
void oxp_saferead_unblock_faults(void);
/* A sampler thread takes a guard before its first read and gives it back
 * before it ends; without one its reads use the fallback. */
int oxp_saferead_thread_begin(void); /* 1 when the thread got a guard */
void oxp_saferead_thread_end(void);
/* Once per tick on a guarded thread: checks that our fault handler is still
 * the installed one; if not, this tick's reads use the fallback. */
void oxp_saferead_tick(void);
/* Faults caught during direct reads, process-wide. */
uint64_t oxp_saferead_faults(void);
/* Copies n bytes at address src into dst.  0, or -1 if any byte is unreadable. */
int oxp_saferead(void *dst, uintptr_t src, size_t n);
/* Follows a pointer to what it points to, back to back (one guarded copy
 * with the direct reader), for a pointer and its target read as close
 * together in time as possible: reads the pointer at `at`; when via >= 0,
 * then the pointer `via` bytes into what that one points to; then n bytes
 * at the last pointer into dst.  *target is the last pointer (0 if not
 * reached).  0 when everything was read; 1 when the last pointer was but
 * is 0 or its n bytes are unreadable; -1 when a pointer on the way was
 * unreadable or 0. */
int oxp_saferead_chase(uintptr_t at, intptr_t via, uintptr_t *target, void *dst, size_t n);
/* Reads up to `count` (local, remote) pairs, stopping at the first that
 * fails; returns how many were read completely. */
size_t oxp_safereadv(const struct iovec *local, const struct iovec *remote, size_t count);
void oxp_saferead_after_fork_child(void);

#endif
