// How long one cache line takes to go from CPU A to CPU B and back: a thread on each bounces
// a counter.
//
//   cc -O2 -pthread -o /tmp/line_rtt benches/compare/line_rtt.c
//   /tmp/line_rtt 0 1 300          for 300 ms; prints the median round trip in ns (10 ms slices)
//   /tmp/line_rtt 0 1 watch 1000   until killed (or its parent exits): once a period, both
//                                  threads wake together (SCHED_FIFO when allowed) for 16
//                                  batches of 16 round trips; prints the Unix time, the median
//                                  batch's mean in ns and both CPUs' clocks (MHz); well under
//                                  0.1 ms of each CPU a second, at most ~8 ms if the other side
//                                  is late
//
// A vhost-user backend lives on such transfers (rings, descriptors and buffers written on one
// CPU and read on the other). In a VM they cost what the host's placement of the two vCPUs
// makes them cost, and that placement changes while the VM runs: on the development machine
// (a cloud VM) the round trip is ~55 ns for a while, then ~300-450 ns for a while (seconds to
// minutes), and every backend forwards about half as fast in the second placement. run.sh
// watches it during every run so that backends can be compared within one placement.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static _Alignas(64) _Atomic uint64_t ball;
static _Atomic int stop;
// watch mode: the period the pong thread is ready for, and the last one the ping thread ended
static _Alignas(64) _Atomic int64_t ready, done;
static int64_t period_ns;
static struct timespec start;

enum { BATCHES = 16, TRIPS = 16 };
// watch mode: the ping side's wait for the pong side, its budget for all trips, and how long
// the pong side answers at most (both waits and the budget, plus a margin).
static const double WAIT_NS = 2e6, TRIPS_NS = 2e6, PONG_NS = 6e6;

static int pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void pin_or_die(int cpu) {
    int rc = pin(cpu);
    if (rc != 0) {
        fprintf(stderr, "line_rtt: pin to CPU %d: %s\n", cpu, strerror(rc));
        exit(1);
    }
}

// Starts the answering side on CPU *cpu (it pins itself), or exits.
static pthread_t spawn(void *(*side)(void *), int *cpu) {
    pthread_t t;
    int rc = pthread_create(&t, NULL, side, cpu);
    if (rc != 0) {
        fprintf(stderr, "line_rtt: thread: %s\n", strerror(rc));
        exit(1);
    }
    return t;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

// Returns every odd value it sees as the next even one.
static void *pong(void *arg) {
    pin_or_die(*(int *)arg);
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

// watch mode, CPU B: in each period, answers until the ping side is done or PONG_NS passed.
static void *watch_pong(void *arg) {
    pin_or_die(*(int *)arg);
    realtime();
    for (int64_t k = 1;; k++) {
        sleep_until(k);
        atomic_store_explicit(&ready, k, memory_order_release);
        double t0 = now_ns();
        for (uint32_t i = 0; atomic_load_explicit(&done, memory_order_acquire) < k; i++) {
            uint64_t v = atomic_load_explicit(&ball, memory_order_acquire);
            if (v & 1)
                atomic_store_explicit(&ball, v + 1, memory_order_release);
            if (i % 1024 == 0 && now_ns() - t0 > PONG_NS)
                break;
        }
        atomic_store_explicit(&mhz_b, core_mhz(), memory_order_relaxed);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// watch mode, CPU A: prints the time (Unix seconds), the median of BATCHES batch means of
// TRIPS round trips in ns (a batch a host pause hit does not move it) and the two CPUs' clocks
// in MHz once a period; nothing for a period in which the other side did not come within
// WAIT_NS or the trips took over TRIPS_NS.
static int watch(int a, int b, int ms) {
    // Gone with its parent (run.sh killed with SIGKILL): no FIFO thread left waking up.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    period_ns = (int64_t)ms * 1000000;
    clock_gettime(CLOCK_MONOTONIC, &start);
    spawn(watch_pong, &b);
    pin_or_die(a);
    realtime();
    uint64_t next = 1; // odd values are ours to send, each once
    for (int64_t k = 1;; k++) {
        sleep_until(k);
        double t0 = now_ns();
        while (atomic_load_explicit(&ready, memory_order_acquire) < k && now_ns() - t0 < WAIT_NS)
            ;
        int ok = atomic_load_explicit(&ready, memory_order_acquire) >= k;
        double batch[BATCHES], t1 = now_ns();
        for (int i = 0; ok && i < BATCHES; i++) {
            double b0 = now_ns();
            for (int j = 0; ok && j < TRIPS; j++) {
                uint64_t v = next;
                next += 2;
                atomic_store_explicit(&ball, v, memory_order_release);
                for (uint32_t s = 0; atomic_load_explicit(&ball, memory_order_acquire) != v + 1;
                     s++)
                    if (s % 1024 == 0 && now_ns() - t1 > TRIPS_NS) {
                        ok = 0;
                        break;
                    }
            }
            batch[i] = (now_ns() - b0) / TRIPS;
        }
        atomic_store_explicit(&done, k, memory_order_release);
        int64_t mhz_a = core_mhz();
        if (ok) {
            qsort(batch, BATCHES, sizeof batch[0], cmp);
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            // CPU B's clock as it last measured it, after answering (this period or the one
            // before; 0 until its first).
            printf("%ld.%03ld %.0f %lld %lld\n", (long)wall.tv_sec, wall.tv_nsec / 1000000,
                   batch[BATCHES / 2], (long long)mhz_a,
                   (long long)atomic_load_explicit(&mhz_b, memory_order_relaxed));
            fflush(stdout);
        }
    }
}

static int cpu_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v >= CPU_SETSIZE) {
        fprintf(stderr, "line_rtt: not a CPU number: %s\n", s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[3], "watch") == 0)) {
        fprintf(stderr, "usage: %s CPU_A CPU_B MS | %s CPU_A CPU_B watch PERIOD_MS\n", argv[0],
                argv[0]);
        return 2;
    }
    int a = cpu_arg(argv[1]), b = cpu_arg(argv[2]), ms = atoi(argv[argc - 1]);
    if (a == b) {
        fprintf(stderr, "line_rtt: two different CPUs\n");
        return 2;
    }
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
    pthread_t t = spawn(pong, &b);
    pin_or_die(a);
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
