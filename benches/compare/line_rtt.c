// How long one cache line takes to go from CPU A to CPU B and back: a thread on each bounces
// a counter.
//
//   cc -O2 -pthread -o /tmp/line_rtt benches/compare/line_rtt.c
//   /tmp/line_rtt 0 1 300          for 300 ms; prints the median round trip in ns (10 ms slices)
//   /tmp/line_rtt 0 1 watch 1000   until killed: once a period, both threads wake together
//                                  (SCHED_FIFO when allowed) for 256 round trips; prints the
//                                  Unix time, their mean and both CPUs' clocks (MHz); ~0.1 ms
//                                  of each CPU a second
//
// A vhost-user backend lives on such transfers (rings, descriptors and buffers written on one
// CPU and read on the other). In a VM they cost what the host's placement of the two vCPUs
// makes them cost, and that placement changes while the VM runs: on the development machine
// (a cloud VM) the round trip is ~55 ns for a while, then ~320 ns for a while (seconds to
// minutes), and every backend forwards about half as fast in the second placement. run.sh
// watches it during every run so that backends can be compared within one placement.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Alignas(64) _Atomic uint64_t ball;
static _Atomic int stop;
// watch mode: the period the pong thread is ready for, and the last one the ping thread ended
static _Alignas(64) _Atomic int64_t ready, done;
static int64_t period_ns;
static struct timespec start;

static int pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

// Returns every odd value it sees as the next even one.
static void *pong(void *arg) {
    if (pin(*(int *)arg) != 0) {
        perror("line_rtt: pin");
        exit(1);
    }
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t v = atomic_load_explicit(&ball, memory_order_acquire);
        if (v & 1)
            atomic_store_explicit(&ball, v + 1, memory_order_release);
    }
    return NULL;
}

static void realtime(void) {
    struct sched_param p = {.sched_priority = 1};
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &p); // best effort
}

// Sleeps until period k starts (CLOCK_MONOTONIC, from `start`).
static void sleep_until(int64_t k) {
    int64_t ns = start.tv_nsec + k * period_ns;
    struct timespec t = {start.tv_sec + ns / 1000000000, ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0)
        ;
}

// The core's clock in MHz: 20000 dependent one-cycle adds (~6 us) against CLOCK_MONOTONIC. A
// VM's host changes it too (boost), by up to 2x on the development machine.
static _Atomic int64_t mhz_b;
static int64_t core_mhz(void) {
#if defined(__x86_64__)
    uint64_t x = 0;
    double t0 = now_ns();
    for (int i = 0; i < 20000; i++)
        __asm__ volatile("add $1, %0" : "+r"(x));
    return (int64_t)(20000 * 1e3 / (now_ns() - t0));
#else
    return 0;
#endif
}

// watch mode, CPU B: in each period, answers until the ping side is done or 20 ms passed.
static void *watch_pong(void *arg) {
    if (pin(*(int *)arg) != 0) {
        perror("line_rtt: pin");
        exit(1);
    }
    realtime();
    for (int64_t k = 1;; k++) {
        sleep_until(k);
        atomic_store_explicit(&ready, k, memory_order_release);
        double t0 = now_ns();
        for (uint32_t i = 0; atomic_load_explicit(&done, memory_order_acquire) < k; i++) {
            uint64_t v = atomic_load_explicit(&ball, memory_order_acquire);
            if (v & 1)
                atomic_store_explicit(&ball, v + 1, memory_order_release);
            if (i % 1024 == 0 && now_ns() - t0 > 20e6)
                break;
        }
        atomic_store_explicit(&mhz_b, core_mhz(), memory_order_relaxed);
    }
    return NULL;
}

// watch mode, CPU A: prints the time (Unix seconds), the mean of 256 round trips in ns and the
// two CPUs' clocks in MHz once a period (nothing for a period in which the other side did not
// come, or a trip took over 1 ms).
static int watch(int a, int b, int ms) {
    period_ns = (int64_t)ms * 1000000;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_t t;
    if (pthread_create(&t, NULL, watch_pong, &b) != 0 || pin(a) != 0) {
        perror("line_rtt");
        return 1;
    }
    realtime();
    uint64_t next = 1; // odd values are ours to send
    for (int64_t k = 1;; k++) {
        sleep_until(k);
        double t0 = now_ns();
        while (atomic_load_explicit(&ready, memory_order_acquire) < k && now_ns() - t0 < 5e6)
            ;
        int ok = atomic_load_explicit(&ready, memory_order_acquire) >= k;
        double t1 = now_ns();
        for (int i = 0; ok && i < 256; i++, next += 2) {
            atomic_store_explicit(&ball, next, memory_order_release);
            for (uint32_t j = 0; atomic_load_explicit(&ball, memory_order_acquire) != next + 1; j++)
                if (j % 1024 == 0 && now_ns() - t1 > 1e6 * (i + 1)) {
                    ok = 0;
                    break;
                }
        }
        double t2 = now_ns();
        atomic_store_explicit(&done, k, memory_order_release);
        int64_t mhz_a = core_mhz();
        if (ok) {
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            // CPU B's clock is from the period before (it measures after answering).
            printf("%ld.%03ld %.0f %lld %lld\n", (long)wall.tv_sec, wall.tv_nsec / 1000000,
                   (t2 - t1) / 256, (long long)mhz_a,
                   (long long)atomic_load_explicit(&mhz_b, memory_order_relaxed));
            fflush(stdout);
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[3], "watch") == 0)) {
        fprintf(stderr, "usage: %s CPU_A CPU_B MS | %s CPU_A CPU_B watch PERIOD_MS\n", argv[0],
                argv[0]);
        return 2;
    }
    int a = atoi(argv[1]), b = atoi(argv[2]), ms = atoi(argv[argc - 1]);
    if (argc == 5) {
        if (ms < 100 || ms > 60000) {
            fprintf(stderr, "line_rtt: PERIOD_MS from 100 to 60000\n");
            return 2;
        }
        return watch(a, b, ms);
    }
    if (ms < 10 || ms > 60000) {
        fprintf(stderr, "line_rtt: MS from 10 to 60000\n");
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, pong, &b) != 0 || pin(a) != 0) {
        perror("line_rtt");
        return 1;
    }
    int n = ms / 10;
    double *rtt = calloc(n, sizeof *rtt);
    if (!rtt)
        return 1;
    for (int i = 0; i < n; i++) {
        double t0 = now_ns(), t1;
        uint64_t trips = 0;
        do {
            uint64_t v = atomic_load_explicit(&ball, memory_order_relaxed) + 1; // odd
            atomic_store_explicit(&ball, v, memory_order_release);
            while (atomic_load_explicit(&ball, memory_order_acquire) == v)
                ;
            // The clock read every 64 trips only, to keep it out of the figure.
            if (++trips % 64 == 0)
                t1 = now_ns();
            else
                t1 = t0;
        } while (t1 - t0 < 10e6);
        rtt[i] = (t1 - t0) / trips;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    qsort(rtt, n, sizeof *rtt, cmp);
    printf("%.0f\n", rtt[n / 2]);
    return 0;
}
