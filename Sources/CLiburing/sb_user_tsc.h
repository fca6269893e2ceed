// User time measured by the time-stamp counter: the cycles a thread spends between returning from
// one system call and entering the next (issue 16 item 3). A measurement build only: compiled in
// with -DSB_USER_TSC (`Benchmarks/scripts/user-tsc.sh` builds it under `.build-usertsc`), and in
// the C++ peer through the LD_PRELOAD library `Benchmarks/usertsc/preload.c`, which includes this
// same file. A normal build has none of it: without SB_USER_TSC the two hooks are empty.
// x86-64 only (`rdtsc`; the script checks for a constant, nonstop TSC).
//
// Why: this kernel accounts CPU time by tick, and a timer interrupt held while the kernel returns
// from a system call is taken at the first user instruction, so perf's samples and /proc's user
// column both charge kernel exit time to user space (post-syscall-samples.py: 23.5% of the epoll
// echo's user samples), and more of it to the server that makes more system calls. The counter is
// read right after the `syscall` instruction returns and right before the next one: what lies
// between is user-space work, whatever the tick does.
//
// What it counts, and does not:
// - Every system call a thread makes must pass through `sb_user_tsc_enter` / `sb_user_tsc_leave`
//   for the figure to be exact. A call that does not (here: the vDSO's clock_gettime, which is user
//   time anyway; glibc's epoll_ctl, eventfd writes, logging) is counted as user time: the error is
//   an overcount, never an undercount. The same holds for the peer's calls the preload does not wrap.
// - Interrupts and steal that land in a user stretch are counted in it: the TSC runs on.
// - Each hook costs one `rdtsc` (~25-40 cycles); half of each lands on the user side.
//
// The counters live in a file that the measuring script maps (SB_USER_TSC_FILE, 32 KiB): a
// header, then one slot per thread that made a counted call. Each slot has one writer, its
// thread, which stores with relaxed atomics; the script reads at any time and takes differences
// between two reads (aligned 8-byte loads do not tear on x86-64 or arm64).
//
// Layout (little-endian u64 words, 512-byte blocks): block 0 is the header: [0] magic
// "SBUSRTSC", [1] TSC ticks per second (calibrated at start against CLOCK_MONOTONIC_RAW over
// 50 ms), [2] slots taken (may pass 63: the later threads are not counted), [3] the layout
// version (3). Blocks 1-63 are the slots: [0] Linux thread id, [1] counted system calls, [2] user
// cycles, [8-32] user cycles by phase and [33-57] stretches by phase, where a phase is the kind
// of the call a stretch followed times 5 plus the kind of the call that ended it (kinds: 0
// receive, 1 send, 2 wait, 3 other, 4 turn, the top of a loop turn, which is not a call;
// `SB_USER_TSC_RECEIVE` ...): on epoll, receive -> send is a message's handling, send -> receive
// the step to the next connection, send -> turn, turn -> wait and wait -> receive the turn's own.
#ifndef SB_USER_TSC_H
#define SB_USER_TSC_H

// The kinds of counted calls, for the breakdown by phase.
#define SB_USER_TSC_RECEIVE 0
#define SB_USER_TSC_SEND 1
#define SB_USER_TSC_WAIT 2
#define SB_USER_TSC_OTHER 3
#define SB_USER_TSC_TURN 4  // not a call: the top of an event loop's turn (sb_user_tsc_turn)
#define SB_USER_TSC_KINDS 5

#ifdef SB_USER_TSC

#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <x86intrin.h>

#define SB_USER_TSC_MAGIC 0x4353545253554253ULL  /* "SBUSRTSC" read as little-endian bytes */
#define SB_USER_TSC_VERSION 3
#define SB_USER_TSC_SLOTS 63

struct sb_user_tsc_slot {
    uint64_t tid, syscalls, user_cycles, reserved[5];
    uint64_t phase_cycles[SB_USER_TSC_KINDS * SB_USER_TSC_KINDS], phase_stretches[SB_USER_TSC_KINDS * SB_USER_TSC_KINDS];
    uint64_t reserved2[6];
};
struct sb_user_tsc_file {
    uint64_t magic, ticks_per_second, slots_in_use, version, reserved[60];
    struct sb_user_tsc_slot slot[SB_USER_TSC_SLOTS];
};
_Static_assert(sizeof(struct sb_user_tsc_slot) == 512, "a slot is 512 bytes");
_Static_assert(sizeof(struct sb_user_tsc_file) == 32768, "the file is 32 KiB");

// One mapping per process; NULL when SB_USER_TSC_FILE is unset (then the hooks count nothing).
static struct sb_user_tsc_file *sb_user_tsc_mapping;
// This thread's slot (NULL before its first counted call, or when all slots are taken), the
// TSC of its last return from a counted call (0: none yet, so the first stretch is not counted)
// and that call's kind.
static __thread struct sb_user_tsc_slot *sb_user_tsc_own;
static __thread uint64_t sb_user_tsc_returned_at;
static __thread unsigned sb_user_tsc_last_kind;

static inline uint64_t sb_user_tsc_now(void) { return __rdtsc(); }

__attribute__((constructor)) static void sb_user_tsc_open(void) {
    const char *path = getenv("SB_USER_TSC_FILE");
    if (!path || !*path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, sizeof(struct sb_user_tsc_file)) != 0) { close(fd); return; }
    void *m = mmap(NULL, sizeof(struct sb_user_tsc_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return;
    struct sb_user_tsc_file *f = m;
    // Ticks per second: the TSC against the raw monotonic clock over 50 ms (constant_tsc and
    // nonstop_tsc on the machines this runs on; the script checks /proc/cpuinfo).
    struct timespec t0, t1, pause = { 0, 50 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC_RAW, &t0);
    uint64_t c0 = sb_user_tsc_now();
    nanosleep(&pause, NULL);
    clock_gettime(CLOCK_MONOTONIC_RAW, &t1);
    uint64_t c1 = sb_user_tsc_now();
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    f->ticks_per_second = (uint64_t)((double)(c1 - c0) * 1e9 / ns);
    f->version = SB_USER_TSC_VERSION;
    // The magic last: a reader that sees it sees the rate.
    __atomic_store_n(&f->magic, SB_USER_TSC_MAGIC, __ATOMIC_RELEASE);
    sb_user_tsc_mapping = f;
}

// Before a system call of `kind` (< SB_USER_TSC_KINDS): the stretch since this thread's last
// return is user time.
static inline void sb_user_tsc_enter(unsigned kind) {
    struct sb_user_tsc_file *f = sb_user_tsc_mapping;
    if (!f) return;
    uint64_t now = sb_user_tsc_now();
    struct sb_user_tsc_slot *s = sb_user_tsc_own;
    if (!s) {
        uint64_t i = __atomic_fetch_add(&f->slots_in_use, 1, __ATOMIC_RELAXED);
        if (i >= SB_USER_TSC_SLOTS) { sb_user_tsc_returned_at = 0; return; }  // no slot: not counted
        s = &f->slot[i];
        __atomic_store_n(&s->tid, (uint64_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
        sb_user_tsc_own = s;
    }
    // Relaxed: one writer per slot; the reader wants no ordering between the words, only
    // untorn values (it takes differences over seconds).
    if (kind != SB_USER_TSC_TURN) __atomic_store_n(&s->syscalls, s->syscalls + 1, __ATOMIC_RELAXED);
    if (sb_user_tsc_returned_at) {
        uint64_t cycles = now - sb_user_tsc_returned_at;
        unsigned phase = sb_user_tsc_last_kind * SB_USER_TSC_KINDS + kind;
        __atomic_store_n(&s->user_cycles, s->user_cycles + cycles, __ATOMIC_RELAXED);
        __atomic_store_n(&s->phase_cycles[phase], s->phase_cycles[phase] + cycles, __ATOMIC_RELAXED);
        __atomic_store_n(&s->phase_stretches[phase], s->phase_stretches[phase] + 1, __ATOMIC_RELAXED);
    }
    sb_user_tsc_last_kind = kind;
}

// After a system call returned.
static inline void sb_user_tsc_leave(void) {
    if (!sb_user_tsc_mapping || !sb_user_tsc_own) return;
    sb_user_tsc_returned_at = sb_user_tsc_now();
}

#else

static inline void sb_user_tsc_enter(unsigned kind) { (void)kind; }
static inline void sb_user_tsc_leave(void) {}

#endif  // SB_USER_TSC
#endif  // SB_USER_TSC_H
