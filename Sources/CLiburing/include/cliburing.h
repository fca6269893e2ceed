#ifndef SWITCHBOARD_CLIBURING_H
#define SWITCHBOARD_CLIBURING_H

// Order matters: liburing.h defines _XOPEN_SOURCE 500; when it comes first, glibc's types
// clash with Swift's Glibc module (fd_set errors). Pull the system headers in first.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <signal.h>
#include <sched.h>
#include <stdint.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <string.h>  // memset in sb_msghdr_set
#include <liburing.h>
#include "sb_refcount.h"  // counted retain/release for a fan-out (SharedFrame.swift)

// Asks for the cache line at `address`, to be read and written soon: the event loops'
// look-ahead (SwitchboardIO/SlotPrefetch.swift). `prefetchw` where the target has it, else (this
// build, x86-64 baseline) `prefetcht0`. A hint: it never faults, whatever the address.
static inline void sb_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }

// IOSQE_* are `1U << enum` and do not import; re-export them as plain constants.
static const uint8_t SB_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const uint8_t SB_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const uint8_t SB_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const uint8_t SB_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

static const uint32_t SB_CQE_F_BUFFER = IORING_CQE_F_BUFFER;
static const uint32_t SB_CQE_F_MORE = IORING_CQE_F_MORE;
static const uint32_t SB_CQE_BUFFER_SHIFT = IORING_CQE_BUFFER_SHIFT;

static const uint32_t SB_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
static const uint32_t SB_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN;
static const uint32_t SB_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
static const uint32_t SB_SETUP_R_DISABLED = IORING_SETUP_R_DISABLED;
static const uint32_t SB_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL;
static const uint32_t SB_ASYNC_CANCEL_ALL = IORING_ASYNC_CANCEL_ALL;

/// Creates a ring. Tries `flags`, then falls back to fewer setup flags on -EINVAL (older
/// kernels). Returns 0 or -errno; `*applied_flags` receives the flags that worked.
int sb_ring_init(struct io_uring *ring, unsigned entries, uint32_t flags, uint32_t *applied_flags);

/// Enables a ring created with IORING_SETUP_R_DISABLED. liburing 2.3 on Debian does not export
/// io_uring_enable_rings, so this goes through io_uring_register directly.
int sb_ring_enable(struct io_uring *ring);

/// Sets up a provided-buffer ring (missing in liburing 2.3): mmap + register + init.
/// Returns NULL and sets *err to -errno on failure.
struct io_uring_buf_ring *sb_setup_buf_ring(struct io_uring *ring, unsigned nentries, int bgid, int *err);
void sb_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned nentries, int bgid);

// The hot path's helpers are `static inline` here, not in shim.c: Swift's clang importer
// emits them into the calling module, where they inline into the shard's code (a call into
// shim.c cannot: no LTO across the two). Each echo on io_uring takes an SQE, prepares a send
// and recycles a receive buffer; as calls they cost ~60 user instructions per echo
// (callgrind, `instructions-per-message.sh uring echo`), inline about a third of that.

/// Adds one buffer and publishes it immediately (add + advance by one).
static inline void sb_buf_ring_recycle(struct io_uring_buf_ring *br, void *addr, unsigned len, unsigned short bid, unsigned mask) {
    io_uring_buf_ring_add(br, addr, len, bid, (int)mask, 0);
    io_uring_buf_ring_advance(br, 1);
}

/// Drains up to `max` completions into caller-owned arrays and advances the CQ; the number
/// drained. (io_uring_for_each_cqe is a macro Swift cannot call; it also loads the tail and the
/// ring's flags again for every completion, where this loads them once per batch.) Inline: the
/// loops call it once or twice per turn, and a batch copies a few words per completion.
static inline unsigned sb_drain_cqes(struct io_uring *ring, uint64_t *user_data, int32_t *res, uint32_t *flags, unsigned max) {
    // The head is ours alone (single issuer: only this thread consumes), a plain load.
    unsigned head = *ring->cq.khead;
    // Acquire: pairs with the kernel's release store of the tail after it wrote the entries,
    // so every entry up to the tail read here is whole when it is copied below.
    unsigned ready = io_uring_smp_load_acquire(ring->cq.ktail) - head;
    unsigned count = ready < max ? ready : max;
    unsigned mask = ring->cq.ring_mask;
    unsigned shift = (ring->flags & IORING_SETUP_CQE32) ? 1 : 0;
    const struct io_uring_cqe *cqes = ring->cq.cqes;
    for (unsigned i = 0; i < count; i++) {
        const struct io_uring_cqe *cqe = &cqes[((head + i) & mask) << shift];
        user_data[i] = cqe->user_data;
        res[i] = cqe->res;
        flags[i] = cqe->flags;
    }
    // Release: the copies above are done before the kernel may reuse these entries
    // (io_uring_cq_advance's store, without its second load of the head).
    if (count) io_uring_smp_store_release(ring->cq.khead, head + count);
    return count;
}

/// Submits and waits for at least `wait_nr` completions, or until `timeout_ns` passes
/// (timeout_ns < 0 waits forever). Returns submitted count or -errno (-ETIME on timeout).
int sb_submit_and_wait(struct io_uring *ring, unsigned wait_nr, int64_t timeout_ns);

/// A no-op request (tests: a completion that comes at once).
void sb_prep_nop(struct io_uring_sqe *sqe, uint64_t user_data);

/// Whether the kernel takes a batch wait (`sb_submit_and_wait_batch`): IORING_FEAT_MIN_TIMEOUT
/// (Linux 6.12) and EXT_ARG, on a ring without SQPOLL.
int sb_batch_wait_supported(struct io_uring *ring);

/// Submits, then waits up to `batch_wait_us` for `wait_nr` completions; once that passes, any
/// completion ends the wait, and with none it goes on until `timeout_ns` (< 0: a day). The
/// kernel's min_wait_usec; the caller checked `sb_batch_wait_supported`. Returns the submitted
/// count or -errno (-ETIME on timeout). `refuse_for_testing` nonzero passes the kernel an
/// argument one byte short, which it refuses with -EINVAL when nothing was submitted: the
/// refused-call fallback's test (`IOConfiguration.batchWaitRefusedForTesting`); 0 otherwise.
int sb_submit_and_wait_batch(struct io_uring *ring, unsigned wait_nr, int64_t timeout_ns, uint32_t batch_wait_us,
                             int refuse_for_testing);

/// `sb_get_sqe`'s slow path (shim.c): submits the full SQ, then takes an SQE.
struct io_uring_sqe *sb_get_sqe_after_submit(struct io_uring *ring);

/// Returns an SQE, submitting first if the SQ is full. NULL only if submission fails.
static inline struct io_uring_sqe *sb_get_sqe(struct io_uring *ring) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (__builtin_expect(sqe != NULL, 1)) return sqe;
    return sb_get_sqe_after_submit(ring);
}

// Thread helpers (GNU extensions are not visible from Swift's Glibc).
int sb_set_thread_name(const char *name);
int sb_set_thread_affinity(int cpu);
int sb_gettid(void);
int sb_accept4(int fd);
int sb_eventfd(void);
int sb_eventfd_signal(int fd);
int sb_eventfd_drain(int fd);
int sb_timerfd_periodic(int64_t first_ns, int64_t interval_ns);
int64_t sb_timerfd_drain(int fd);

// Signals: block SIGTERM/SIGINT/SIGPIPE in the calling thread (inherited by threads it
// creates), and wait for SIGTERM/SIGINT synchronously.
int sb_block_signals(void);
int sb_wait_termination_signal(void);
int sb_ignore_sigpipe(void);

// epoll, wrapped because struct epoll_event is packed on x86-64.
int sb_epoll_create(void);
int sb_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int sb_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms);

// recvfrom(2), sendto(2), sendmsg(2) without glibc's cancellation-point wrapper (see shim.c).
ssize_t sb_recv(int fd, void *buf, size_t count);
ssize_t sb_send(int fd, const void *buf, size_t count);
ssize_t sb_sendv(int fd, const struct iovec *iov, int iovcnt);

static const int SB_EPOLL_CTL_ADD = 1;
static const int SB_EPOLL_CTL_DEL = 2;
static const int SB_EPOLL_CTL_MOD = 3;
static const uint32_t SB_EPOLLIN = 0x001;
static const uint32_t SB_EPOLLOUT = 0x004;
static const uint32_t SB_EPOLLERR = 0x008;
static const uint32_t SB_EPOLLHUP = 0x010;
static const uint32_t SB_EPOLLRDHUP = 0x2000;
static const uint32_t SB_EPOLLET = 1u << 31;

// Sockets.
/// Creates a listening TCP socket (SO_REUSEADDR, non-blocking as asked). host is an IPv4 or
/// IPv6 literal. Returns fd or -errno.
int sb_listen_tcp(const char *host, int port, int backlog, bool nonblocking);
/// Local port a socket is bound to, or -errno.
int sb_local_port(int fd);
int sb_set_nonblocking(int fd);
int sb_set_nodelay(int fd);
/// Outbound connections (OutboundConnection.swift): a non-blocking TCP socket connecting to an
/// IPv4 or IPv6 literal. Returns the fd (*in_progress = 1 while the connect is still on its
/// way: wait for writability, then read sb_socket_error) or -errno.
int sb_connect_tcp(const char *host, int port, int *in_progress);
/// The socket's pending error (SO_ERROR), 0 when none, or -errno when it cannot be read.
int sb_socket_error(int fd);

/// Monotonic clock in nanoseconds.
int64_t sb_monotonic_ns(void);
/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long sb_raise_nofile_limit(void);

// SQE preparation with user_data in one call (sqe unions import awkwardly into Swift). The
// three of the data path inline (see `sb_buf_ring_recycle`).
static inline void sb_prep_recv_multishot(struct io_uring_sqe *sqe, int fd, uint16_t bgid, uint64_t user_data) {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    io_uring_sqe_set_data64(sqe, user_data);
}
// MSG_DONTWAIT: io_uring then never parks a send that would block on a poll of its own
// (io_sendmsg_prep sets REQ_F_NOWAIT); it completes inside the io_uring_enter that submits
// it, with -EAGAIN when the socket is full. UringShard counts on that (see its waits).
static inline void sb_prep_send(struct io_uring_sqe *sqe, int fd, const void *buf, size_t len, uint64_t user_data) {
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, user_data);
}
static inline void sb_prep_sendmsg(struct io_uring_sqe *sqe, int fd, const struct msghdr *msg, uint64_t user_data) {
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, user_data);
}
void sb_prep_cancel(struct io_uring_sqe *sqe, uint64_t target_user_data, uint64_t user_data);
void sb_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned len, uint64_t user_data);
void sb_prep_multishot_accept(struct io_uring_sqe *sqe, int fd, uint64_t user_data);
void sb_prep_msg_ring(struct io_uring_sqe *sqe, int ring_fd, uint32_t len, uint64_t data, uint64_t user_data);
/// One-shot poll for `mask` (POLLOUT: an outbound connect finished).
void sb_prep_poll_add(struct io_uring_sqe *sqe, int fd, unsigned mask, uint64_t user_data);
void sb_prep_timeout(struct io_uring_sqe *sqe, struct __kernel_timespec *ts, uint64_t user_data);
void sb_prep_shutdown(struct io_uring_sqe *sqe, int fd, int how, uint64_t user_data);
// Direct descriptors: a sparse registered file table and one slot set or emptied (shim.c); an
// SQE whose fd is a slot of it (inline: every send and receive of such a socket marks one).
int sb_register_files_sparse(struct io_uring *ring, unsigned count);
int sb_register_file_at(struct io_uring *ring, unsigned index, int fd);
static inline void sb_sqe_fixed_file(struct io_uring_sqe *sqe) { sqe->flags |= IOSQE_FIXED_FILE; }
/// IORING_REGISTER_IOWQ_MAX_WORKERS: sets the calling thread's kernel worker limits (0: as is)
/// and returns the previous ones in place (shim.c).
int sb_register_worker_limits(struct io_uring *ring, unsigned *bounded, unsigned *unbounded);
int sb_ring_fd(struct io_uring *ring);
/// Submits without waiting, and (with DEFER_TASKRUN) runs pending task work so completions
/// are posted.
int sb_submit_and_get_events(struct io_uring *ring);
/// Submits, then sleeps in poll(2) on the ring's descriptor until it is readable or
/// `timeout_ms` passes (-1: no limit). With IORING_SETUP_DEFER_TASKRUN a completion does not
/// make it readable until io_uring_enter runs the deferred work: keep the timeout short. For
/// valgrind only (`IOConfiguration.waitThroughPoll`).
int sb_submit_then_poll(struct io_uring *ring, int timeout_ms);
/// Fills an msghdr for a vectored send.
static inline void sb_msghdr_set(struct msghdr *msg, struct iovec *iov, size_t iovlen) {
    memset(msg, 0, sizeof(*msg));
    msg->msg_iov = iov;
    msg->msg_iovlen = iovlen;
}

/// Thread-local pointer naming the shard that runs on this thread (NULL elsewhere): lets the
/// broker API take the direct path when called on the owning shard.
void sb_set_current_shard(void *shard);
void *sb_current_shard(void);

/// Bytes the C heap has handed out and not yet taken back (mallinfo2().uordblks); tests use it
/// to show a fan-out shares one buffer.
size_t sb_malloc_in_use(void);
/* glibc's mallinfo2 over all arenas: bytes in use (arena chunks and mmapped chunks) and bytes
   free in the arenas (held, not given back to the kernel). */
void sb_malloc_statistics(size_t *in_use_bytes, size_t *free_bytes);
/* mallopt(M_TRIM_THRESHOLD, trim_bytes) and mallopt(M_MMAP_THRESHOLD, mmap_bytes): 1 if both were taken. */
int sb_malloc_set_thresholds(int trim_bytes, int mmap_bytes);

/// A measurement build (-DSB_USER_TSC, `Benchmarks/scripts/user-tsc.sh`) marks the top of each
/// loop turn in its user-time counters (shim.c's `sb_user_tsc.h`), to split a turn's own work
/// from its messages'. Elsewhere an empty inline function: no call.
#ifdef SB_USER_TSC
void sb_user_tsc_turn(void);
#else
static inline void sb_user_tsc_turn(void) {}
#endif

#endif // SWITCHBOARD_CLIBURING_H
