// How long one cache line takes to go from CPU A to CPU B and back: a thread on each bounces
// a counter for MS milliseconds; prints the median round trip in ns over 10 ms slices.
//
//   cc -O2 -pthread -o /tmp/line_rtt benches/compare/line_rtt.c
//   /tmp/line_rtt 0 1 300
//
// A vhost-user backend lives on such transfers (rings, descriptors and buffers written on one
// CPU and read on the other). In a VM they cost what the host's placement of the two vCPUs
// makes them cost, and that placement changes while the VM runs: on the development machine
// (a cloud VM) the round trip is ~85 ns for minutes, then ~330 ns for tens of seconds, and
// every backend forwards about half as fast in the second state. run.sh measures it before
// and after each run so that backends can be compared within one placement.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) _Atomic uint64_t ball;
static _Atomic int stop;

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

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CPU_A CPU_B MS\n", argv[0]);
        return 2;
    }
    int a = atoi(argv[1]), b = atoi(argv[2]), ms = atoi(argv[3]);
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
