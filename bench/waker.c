/* A thread that only wakes up, 1000 times a second, inside any process it is
 * preloaded into: what an in-process 1 kHz sampler costs before it reads
 * anything.  bench/flask_load.py --waker loads it into the gunicorn worker
 * and switches it on and off between runs through a file:
 *
 *   cc -O2 -shared -fPIC -o /tmp/oxp_waker.so bench/waker.c -lpthread
 *   OXP_WAKER_FILE=/tmp/on LD_PRELOAD=/tmp/oxp_waker.so <command>
 *
 * The thread starts in forked children only (the gunicorn worker, not its
 * master).  While the file exists the thread waits on a condition variable with an
 * absolute 1 ms deadline, like ox_profile's sampler; otherwise it checks for
 * the file every 100 ms. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static const char *flag_file; /* set once before the thread starts */

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *wake(void *arg)
{
    (void)arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    prctl(PR_SET_NAME, "oxp_waker", 0UL, 0UL, 0UL);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &attr);
    pthread_mutex_lock(&lock);
    for (;;) {
        int on = access(flag_file, F_OK) == 0;
        long long step = on ? 1000000LL : 100000000LL, next = now_ns();
        for (int i = 0; i < (on ? 100 : 1); i++) { /* re-check the file every 100 ms */
            next += step;
            struct timespec deadline = {next / 1000000000LL, next % 1000000000LL};
            pthread_cond_timedwait(&cond, &lock, &deadline);
        }
    }
    return NULL;
}

static void start_in_child(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, wake, NULL) == 0) {
        pthread_detach(t);
    }
}

__attribute__((constructor)) static void setup(void)
{
    flag_file = getenv("OXP_WAKER_FILE");
    if (flag_file != NULL) {
        pthread_atfork(NULL, NULL, start_in_child);
    }
}
