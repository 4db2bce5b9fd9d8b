/* The CPU cost of waking a thread 1000 times a second, doing nothing else:
 * the floor under any in-process sampler's "sampler CPU" on this machine.
 * Build and run: cc -O2 -o /tmp/timer_floor bench/timer_floor.c -lpthread && /tmp/timer_floor */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>

static long long now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void)
{
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* as the sampler does */
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &attr);
    const int ticks = 3000;
    long long next = now_ns(CLOCK_MONOTONIC), wall0 = next, cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < ticks; i++) {
        next += 1000000;
        struct timespec deadline = {next / 1000000000LL, next % 1000000000LL};
        pthread_cond_timedwait(&cond, &lock, &deadline);
    }
    pthread_mutex_unlock(&lock);
    long long cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0, wall = now_ns(CLOCK_MONOTONIC) - wall0;
    printf("empty 1 kHz wake-up loop: %.2f%% of a core, %.1f us of CPU per wake-up\n", 100.0 * cpu / wall,
           cpu / (double)ticks / 1000);
    return 0;
}
