/* The floor under any in-process sampler on this machine: a thread that only
 * wakes on a fixed grid (1 kHz by default) and does nothing else.  Prints the
 * CPU it costs (percent of a core, microseconds per wake-up), how late the
 * wake-ups are, and the share of grid slots a sampler that skips the slots it
 * wakes too late for could take (the best "achieved rate" the machine allows).
 * Build and run:
 *   cc -O2 -o /tmp/timer_floor bench/timer_floor.c -lpthread && /tmp/timer_floor [interval_us] [seconds]
 * With a third argument "json" it prints one JSON object instead. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static long long now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long long interval_ns = (argc > 1 ? atoll(argv[1]) : 1000) * 1000LL;
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    int json = argc > 3 && strcmp(argv[3], "json") == 0;
    if (interval_ns <= 0 || seconds <= 0) {
        fprintf(stderr, "usage: timer_floor [interval_us] [seconds] [json]\n");
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* as the sampler does */
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &attr);
    long long slots = (long long)(seconds * 1e9 / (double)interval_ns);
    long long *late = calloc((size_t)slots, sizeof *late);
    if (late == NULL) {
        return 1;
    }
    long long wakes = 0, taken = 0;
    long long next = now_ns(CLOCK_MONOTONIC) + interval_ns, wall0 = next - interval_ns;
    long long end = wall0 + slots * interval_ns;
    long long cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    pthread_mutex_lock(&lock);
    while (next <= end) {
        struct timespec deadline = {next / 1000000000LL, next % 1000000000LL};
        pthread_cond_timedwait(&cond, &lock, &deadline);
        long long now = now_ns(CLOCK_MONOTONIC);
        if (now < next) {
            continue;
        }
        late[wakes++] = now - next;
        taken++;
        /* the sampler's rule: the next slot after now, skipping those missed */
        while (next <= now) {
            next += interval_ns;
        }
    }
    pthread_mutex_unlock(&lock);
    long long cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0, wall = now_ns(CLOCK_MONOTONIC) - wall0;
    qsort(late, (size_t)wakes, sizeof *late, cmp_ll);
    double pct = 100.0 * (double)cpu / (double)wall, per = (double)cpu / (double)wakes / 1000.0;
    double hit = 100.0 * (double)taken / (double)slots;
    double med = late[wakes / 2] / 1000.0, p99 = late[wakes * 99 / 100] / 1000.0;
    if (json) {
        printf("{\"interval_us\": %lld, \"cpu_percent\": %.3f, \"cpu_us_per_wake\": %.2f, "
               "\"slots_taken_percent\": %.2f, \"late_median_us\": %.1f, \"late_p99_us\": %.1f}\n",
               interval_ns / 1000, pct, per, hit, med, p99);
    } else {
        printf("empty wake-up loop every %lld us: %.2f%% of a core, %.1f us of CPU per wake-up; "
               "%.1f%% of the slots taken; late by %.1f us (median), %.1f us (99th percentile)\n",
               interval_ns / 1000, pct, per, hit, med, p99);
    }
    free(late);
    return 0;
}
