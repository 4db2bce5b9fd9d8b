/* Crash-proof reads of our own memory: see saferead.h. */
#define _GNU_SOURCE
#include "saferead.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Written once by oxp_saferead_init (GIL held, before any sampler runs) and
 * in the fork child; read by sampler threads. */
static oxp_reader_t reader = OXP_READER_NONE;
static pid_t self_pid;
static int mem_fd = -1;

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
    int want_vm = force == NULL || strcmp(force, "vm") == 0 || force[0] == '\0';
    int want_mem = force == NULL || strcmp(force, "procmem") == 0 || force[0] == '\0';
    if (want_vm && probe_vm() == 0) {
        reader = OXP_READER_VM;
        return 0;
    }
    if (want_mem && open_procmem() == 0) {
        reader = OXP_READER_PROCMEM;
        return 0;
    }
    return -1;
}

oxp_reader_t oxp_saferead_kind(void) { return reader; }

const char *oxp_saferead_name(void)
{
    switch (reader) {
    case OXP_READER_VM:
        return "process_vm_readv";
    case OXP_READER_PROCMEM:
        return "/proc/self/mem";
    default:
        return "none";
    }
}

int oxp_saferead(void *dst, uintptr_t src, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (src < 4096) {
        return -1;
    }
    if (reader == OXP_READER_VM) {
        struct iovec l = {dst, n};
        struct iovec r = {(void *)src, n};
        return process_vm_readv(self_pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -1;
    }
    if (reader == OXP_READER_PROCMEM && mem_fd >= 0) {
        return pread(mem_fd, dst, n, (off_t)src) == (ssize_t)n ? 0 : -1;
    }
    return -1;
}

size_t oxp_safereadv(const struct iovec *local, const struct iovec *remote, size_t count)
{
    size_t done = 0;
    if (reader == OXP_READER_VM) {
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
    if (reader == OXP_READER_PROCMEM) {
        /* The inherited descriptor reads the parent's memory. */
        if (open_procmem() < 0) {
            reader = OXP_READER_NONE;
        }
    }
}
