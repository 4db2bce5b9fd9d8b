/* Crash-proof reads of our own memory: see saferead.h. */
#define _GNU_SOURCE
#include "saferead.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Written by oxp_saferead_init (GIL held, before any sampler runs) and in the
 * fork child; read by sampler threads. */
static oxp_reader_t reader = OXP_READER_NONE;   /* the primary reader */
static oxp_reader_t fallback = OXP_READER_NONE; /* vm or procmem: unguarded threads, lost handler */
static pid_t self_pid;
static int mem_fd = -1;

/* -- the direct reader's guard ------------------------------------------- */

/* A copy that faults jumps back to where it started through its thread's
 * guard.  The fault handler finds the guard by thread, without locks. */
typedef struct {
    _Atomic unsigned long owner;  /* pthread_self() of the holder, 0: free (slot assignment under guard_lock) */
    volatile sig_atomic_t active; /* a direct copy is in progress (owner thread only) */
    volatile uintptr_t lo, hi;    /* the source range being copied (owner thread only) */
    int usable;                   /* this tick our handler is the installed one (owner thread only) */
    sigjmp_buf env;               /* the copy's return point (owner thread only) */
} guard_t;

#define GUARD_SLOTS 64
static guard_t guards[GUARD_SLOTS];
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER; /* guards slot assignment */
static _Thread_local guard_t *my_guard; /* this thread's slot, or NULL */

/* The handlers that were installed before ours (written once by
 * oxp_saferead_install before ours goes in, read by the handler). */
static struct sigaction prev_segv, prev_bus;
static atomic_int installed;
static atomic_uint_fast64_t faults;

#if defined(__SANITIZE_ADDRESS__)
/* ASan checks every memcpy against its shadow memory and would report the
 * guarded copies of memory freed under us, which is what the guard is for:
 * under ASan the copy is made here, uninstrumented, a byte at a time
 * (volatile, so that it is not turned back into a memcpy call).  Faults
 * still reach our handler, so the ASan run covers the direct reader. */
__attribute__((no_sanitize_address, noinline)) static void guarded_copy(void *dst, const void *src, size_t n)
{
    volatile unsigned char *d = dst;
    const volatile unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        d[i] = s[i];
    }
}
#else
static inline void guarded_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
#endif

/* A fault that is not ours: what would have happened without us. */
static void pass_on(int sig, siginfo_t *info, void *ctx)
{
    const struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;
    if (prev->sa_handler == SIG_IGN && info->si_code <= 0) {
        return; /* sent by someone, and ignored */
    }
    if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
        /* The default action: put it back and let the fault happen again
         * (or re-send what was sent; it stays blocked until we return). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (info->si_code <= 0) {
            raise(sig);
        }
        return;
    }
    if (prev->sa_flags & SA_RESETHAND) {
        /* A one-shot handler: the kernel would have reset it to the
         * default before running it (it only does so for ours). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
    }
    /* Run it with the signals it asked to block. */
    sigset_t old_mask;
    pthread_sigmask(SIG_BLOCK, &prev->sa_mask, &old_mask);
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, info, ctx);
    } else {
        prev->sa_handler(sig);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

/* Whether the fault is the guarded copy's read of its source (not a write
 * to our own buffer, which would be a bug to let crash). */
static int fault_in_source(const guard_t *g, const siginfo_t *info)
{
    uintptr_t addr = (uintptr_t)info->si_addr;
    if (info->si_code == SI_KERNEL) {
        return 1; /* a non-canonical address: the kernel gives no address */
    }
    return addr >= g->lo && addr < g->hi;
}

static void on_fault(int sig, siginfo_t *info, void *ctx)
{
    if (info->si_code > 0) { /* raised by the kernel for this thread's access */
        unsigned long self = (unsigned long)pthread_self();
        for (int i = 0; i < GUARD_SLOTS; i++) {
            guard_t *g = &guards[i];
            if (g->active && atomic_load_explicit(&g->owner, memory_order_relaxed) == self &&
                fault_in_source(g, info)) {
                siglongjmp(g->env, 1);
            }
        }
    }
    pass_on(sig, info, ctx);
}

static int handler_is_ours(int sig)
{
    struct sigaction cur;
    return sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault;
}

int oxp_saferead_install(void)
{
    if (reader != OXP_READER_DIRECT || atomic_load(&installed)) {
        return 0;
    }
    /* Read the old handlers before ours can run. */
    if (sigaction(SIGSEGV, NULL, &prev_segv) < 0 || sigaction(SIGBUS, NULL, &prev_bus) < 0) {
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK; /* on the alternate stack if the thread has one (stack overflow) */
    if (sigaction(SIGSEGV, &sa, NULL) < 0) {
        return -1;
    }
    if (sigaction(SIGBUS, &sa, NULL) < 0) {
        sigaction(SIGSEGV, &prev_segv, NULL);
        return -1;
    }
    atomic_store(&installed, 1);
    return 0;
}

void oxp_saferead_unblock_faults(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSEGV);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int oxp_saferead_thread_begin(void)
{
    if (reader != OXP_READER_DIRECT || my_guard != NULL) {
        return my_guard != NULL;
    }
    unsigned long self = (unsigned long)pthread_self();
    pthread_mutex_lock(&guard_lock);
    for (int i = 0; i < GUARD_SLOTS; i++) {
        if (atomic_load(&guards[i].owner) == 0) {
            guards[i].active = 0;
            guards[i].usable = 0;
            atomic_store(&guards[i].owner, self);
            my_guard = &guards[i];
            break;
        }
    }
    pthread_mutex_unlock(&guard_lock);
    return my_guard != NULL;
}

void oxp_saferead_thread_end(void)
{
    if (my_guard == NULL) {
        return;
    }
    pthread_mutex_lock(&guard_lock);
    my_guard->usable = 0;
    atomic_store(&my_guard->owner, 0);
    pthread_mutex_unlock(&guard_lock);
    my_guard = NULL;
}

void oxp_saferead_tick(void)
{
    guard_t *g = my_guard;
    if (g != NULL) {
        g->usable = atomic_load(&installed) && handler_is_ours(SIGSEGV) && handler_is_ours(SIGBUS);
    }
}

uint64_t oxp_saferead_faults(void) { return (uint64_t)atomic_load(&faults); }

/* Copies segments until one faults; returns how many were copied whole. */
static size_t direct_readv(guard_t *g, const struct iovec *local, const struct iovec *remote, size_t count)
{
    volatile size_t done = 0;
    if (sigsetjmp(g->env, 0) != 0) {
        g->active = 0;
        /* We left the handler by a jump: the signal is still blocked here. */
        oxp_saferead_unblock_faults();
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        return done;
    }
    g->active = 1;
    atomic_signal_fence(memory_order_seq_cst);
    for (size_t i = 0; i < count; i++) {
        uintptr_t src = (uintptr_t)remote[i].iov_base;
        size_t n = local[i].iov_len;
        if (remote[i].iov_len != n || src < 4096 || n > UINTPTR_MAX - src) {
            break;
        }
        g->lo = src;
        g->hi = src + n;
        atomic_signal_fence(memory_order_seq_cst);
        guarded_copy(local[i].iov_base, (const void *)src, n);
        atomic_signal_fence(memory_order_seq_cst);
        done = i + 1;
    }
    atomic_signal_fence(memory_order_seq_cst);
    g->active = 0;
    return done;
}

/* -- the system-call readers ----------------------------------------------- */

static int probe_vm(void)
{
    static volatile uint64_t probe = 0x0a11ce5eedULL;
    uint64_t out = 0;
    struct iovec l = {&out, sizeof(out)};
    struct iovec r = {(void *)&probe, sizeof(probe)};
    if (process_vm_readv(self_pid, &l, 1, &r, 1, 0) != (ssize_t)sizeof(out) || out != probe) {
        return -1;
    }
    /* An unmapped address must fail, not crash. */
    struct iovec bad = {(void *)(uintptr_t)16, sizeof(out)};
    return process_vm_readv(self_pid, &l, 1, &bad, 1, 0) < 0 ? 0 : -1;
}

static int open_procmem(void)
{
    if (mem_fd >= 0) {
        close(mem_fd);
    }
    mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (mem_fd < 0) {
        return -1;
    }
    static volatile uint64_t probe = 0xfeedbeefULL;
    uint64_t out = 0;
    if (pread(mem_fd, &out, sizeof(out), (off_t)(uintptr_t)&probe) != (ssize_t)sizeof(out) || out != probe) {
        close(mem_fd);
        mem_fd = -1;
        return -1;
    }
    return 0;
}

int oxp_saferead_init(void)
{
    if (reader != OXP_READER_NONE) {
        return 0;
    }
    self_pid = getpid();
    const char *force = getenv("OX_PROFILE_READER");
    int any = force == NULL || force[0] == '\0';
    int want_direct = any || strcmp(force, "direct") == 0;
    int want_mem = any || want_direct || strcmp(force, "procmem") == 0;
    int want_vm = any || want_direct || strcmp(force, "vm") == 0;
    if (want_vm && probe_vm() == 0) {
        fallback = OXP_READER_VM;
    } else if (want_mem && open_procmem() == 0) {
        fallback = OXP_READER_PROCMEM;
    }
    reader = want_direct ? OXP_READER_DIRECT : fallback;
    return reader == OXP_READER_NONE ? -1 : 0;
}

/* Whether our handler was installed and someone has put theirs in since. */
static int handler_replaced(void)
{
    return atomic_load(&installed) && !(handler_is_ours(SIGSEGV) && handler_is_ours(SIGBUS));
}

static const char *reader_name(oxp_reader_t kind)
{
    switch (kind) {
    case OXP_READER_DIRECT:
        return "direct";
    case OXP_READER_VM:
        return "process_vm_readv";
    case OXP_READER_PROCMEM:
        return "/proc/self/mem";
    default:
        return "none";
    }
}

const char *oxp_saferead_name(int guarded)
{
    if (reader != OXP_READER_DIRECT) {
        return reader_name(reader);
    }
    if (handler_replaced()) {
        return fallback == OXP_READER_VM ? "process_vm_readv (fault handler replaced)"
                                         : "/proc/self/mem (fault handler replaced)";
    }
    return guarded ? "direct" : reader_name(fallback);
}

static guard_t *usable_guard(void)
{
    guard_t *g = my_guard;
    return g != NULL && g->usable ? g : NULL;
}

int oxp_saferead(void *dst, uintptr_t src, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (src < 4096) {
        return -1;
    }
    struct iovec l = {dst, n};
    struct iovec r = {(void *)src, n};
    guard_t *g = usable_guard();
    if (g != NULL) {
        return direct_readv(g, &l, &r, 1) == 1 ? 0 : -1;
    }
    if (fallback == OXP_READER_VM) {
        return process_vm_readv(self_pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -1;
    }
    if (fallback == OXP_READER_PROCMEM && mem_fd >= 0) {
        return pread(mem_fd, dst, n, (off_t)src) == (ssize_t)n ? 0 : -1;
    }
    return -1;
}

/* One step of a chase: the pointer at addr, or 0 if unreadable. */
static int read_word(uintptr_t addr, uintptr_t *out)
{
    return oxp_saferead(out, addr, sizeof(*out));
}

int oxp_saferead_chase(uintptr_t at, intptr_t via, uintptr_t *target, void *dst, size_t n)
{
    *target = 0;
    guard_t *g = usable_guard();
    if (g == NULL) {
        uintptr_t p;
        if (read_word(at, &p) < 0 || (via >= 0 && (p == 0 || read_word(p + (uintptr_t)via, &p) < 0))) {
            return -1;
        }
        *target = p;
        return p != 0 && oxp_saferead(dst, p, n) == 0 ? 0 : 1;
    }
    /* Every step in one guarded call: nothing in between but the guard's
     * bookkeeping.  A fault anywhere comes back here with `reached` saying
     * how far it got. */
    const int pointers = via >= 0 ? 2 : 1;
    const uintptr_t hop = via >= 0 ? (uintptr_t)via : 0;
    volatile uintptr_t addr = at;
    volatile uintptr_t last = 0;
    volatile int reached = 0; /* pointers read */
    if (sigsetjmp(g->env, 0) != 0) {
        g->active = 0;
        oxp_saferead_unblock_faults();
        atomic_fetch_add_explicit(&faults, 1, memory_order_relaxed);
        *target = reached == pointers ? last : 0;
        return reached == pointers ? 1 : -1;
    }
    g->active = 1;
    for (int step = 0; step < pointers; step++) {
        uintptr_t a = addr;
        if (a < 4096 || a > UINTPTR_MAX - sizeof(uintptr_t)) {
            g->active = 0;
            return -1;
        }
        g->lo = a;
        g->hi = a + sizeof(uintptr_t);
        atomic_signal_fence(memory_order_seq_cst);
        uintptr_t p;
        guarded_copy(&p, (const void *)a, sizeof(p));
        atomic_signal_fence(memory_order_seq_cst);
        last = p;
        reached = step + 1;
        if (step + 1 < pointers) {
            if (p == 0) {
                g->active = 0;
                return -1;
            }
            addr = p + hop;
        }
    }
    uintptr_t p = last;
    *target = p;
    if (p < 4096 || n > UINTPTR_MAX - p) {
        g->active = 0;
        return 1;
    }
    g->lo = p;
    g->hi = p + n;
    atomic_signal_fence(memory_order_seq_cst);
    guarded_copy(dst, (const void *)p, n);
    atomic_signal_fence(memory_order_seq_cst);
    g->active = 0;
    return 0;
}

size_t oxp_safereadv(const struct iovec *local, const struct iovec *remote, size_t count)
{
    guard_t *g = usable_guard();
    if (g != NULL) {
        return direct_readv(g, local, remote, count);
    }
    size_t done = 0;
    if (fallback == OXP_READER_VM) {
        while (done < count) {
            size_t batch = count - done > 1024 ? 1024 : count - done;
            ssize_t got = process_vm_readv(self_pid, local + done, batch, remote + done, batch, 0);
            if (got < 0) {
                got = 0;
            }
            /* Count the segments fully read. */
            size_t k = 0;
            size_t bytes = (size_t)got;
            while (k < batch && bytes >= local[done + k].iov_len) {
                bytes -= local[done + k].iov_len;
                k++;
            }
            done += k;
            if (k < batch) {
                return done;
            }
        }
        return done;
    }
    for (; done < count; done++) {
        if (oxp_saferead(local[done].iov_base, (uintptr_t)remote[done].iov_base, local[done].iov_len) < 0) {
            break;
        }
    }
    return done;
}

void oxp_saferead_after_fork_child(void)
{
    self_pid = getpid();
    /* Only the forking thread exists here: no sampler holds a guard. */
    pthread_mutex_init(&guard_lock, NULL);
    for (int i = 0; i < GUARD_SLOTS; i++) {
        guards[i].active = 0;
        guards[i].usable = 0;
        atomic_store(&guards[i].owner, 0);
    }
    my_guard = NULL;
    if (fallback == OXP_READER_PROCMEM) {
        /* The inherited descriptor reads the parent's memory. */
        if (open_procmem() < 0) {
            fallback = OXP_READER_NONE;
            if (reader == OXP_READER_PROCMEM) {
                reader = OXP_READER_NONE;
            }
        }
    }
}
