// The memory floor of the forwarding stage's lookups in a table beyond the caches: the time per
// item of a loop that does nothing but read LOOKUPS random 128-byte buckets of a TABLE_MIB table
// (LINES of each bucket's two cache lines), each prefetched AHEAD items before its use, as
// `L2::decide_burst` does. No hashing, parsing or deciding: what is left is what the machine's
// memory system needs for that many random lines, however well they overlap.
//
//   cc -O2 -o /tmp/random_lines benches/compare/random_lines.c
//   taskset -c 1 /tmp/random_lines TABLE_MIB LOOKUPS LINES AHEAD [WORK]
//   e.g. 32 2 1 8: two lookups an item (a frame's source and destination), one line each
//
// WORK (default 0) adds that many rounds of a xorshift chain to each item, work that depends on
// no load: a stand-in for the stage's own computing, to see how much of the memory's time hides
// under it. Pick WORK so that a 2 MiB table (in the caches) takes what the stage takes at 1 k
// hosts, then compare a 32 MiB table with the same WORK: the ratio is what the stage's 1 M / 1 k
// ratio would be if its misses overlapped its work as well as this loop's do.
//
// The table is advised as transparent huge pages (MADV_HUGEPAGE), as the FDB's is. Prints the
// best of 5 passes over 4 M items, in ns per item of the thread's CPU time.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s TABLE_MIB LOOKUPS(1|2) LINES(1|2) AHEAD [WORK]\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)atoi(argv[1]) << 20;
    int lookups = atoi(argv[2]), lines = atoi(argv[3]), ahead = atoi(argv[4]);
    int work = argc == 6 ? atoi(argv[5]) : 0;
    if (size < (2 << 20) || lookups < 1 || lookups > 2 || lines < 1 || lines > 2 || ahead < 0 ||
        work < 0) {
        fprintf(stderr,
                "random_lines: TABLE_MIB >= 2, LOOKUPS and LINES 1 or 2, AHEAD and WORK >= 0\n");
        return 2;
    }
    char *table = aligned_alloc(2 << 20, size);
    if (!table) {
        perror("aligned_alloc");
        return 1;
    }
    madvise(table, size, MADV_HUGEPAGE);
    memset(table, 1, size);
    size_t buckets = size / 128, items = (size_t)1 << 22;
    uint32_t *idx = malloc(items * 2 * sizeof *idx);
    if (!idx) {
        perror("malloc");
        return 1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < items * 2; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        idx[i] = (uint32_t)(x % buckets);
    }
    uint64_t sum = 0, w = x;
    double best = 1e99;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = cpu_ns();
        for (size_t i = 0; i < items; i++) {
            size_t j = i + (size_t)ahead;
            for (int l = 0; l < lookups && j < items; l++) {
                const char *b = table + (size_t)idx[2 * j + l] * 128;
                _mm_prefetch(b, _MM_HINT_T0);
                if (lines == 2)
                    _mm_prefetch(b + 64, _MM_HINT_T0);
            }
            for (int l = 0; l < lookups; l++) {
                const volatile char *b = table + (size_t)idx[2 * i + l] * 128;
                sum += b[0];
                if (lines == 2)
                    sum += b[64];
            }
            for (int k = 0; k < work; k++)
                w ^= w << 13, w ^= w >> 7, w ^= w << 17;
        }
        double t = (cpu_ns() - t0) / items;
        if (t < best)
            best = t;
    }
    printf("%zu MiB, %d lookup(s) of %d line(s) an item, %d ahead, work %d: %.2f ns/item (%llu)\n",
           size >> 20, lookups, lines, ahead, work, best, (unsigned long long)((sum ^ w) & 1));
    return 0;
}
