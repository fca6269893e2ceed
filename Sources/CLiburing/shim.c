#define _GNU_SOURCE
#include "cliburing.h"
#include "sb_user_tsc.h"  // empty hooks unless a measurement build (-DSB_USER_TSC)
#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/syscall.h>
#include <poll.h>

int sb_ring_init(struct io_uring *ring, unsigned entries, uint32_t flags, uint32_t *applied_flags) {
    // Newest first; drop flags one group at a time while the kernel says EINVAL.
    uint32_t attempts[4] = {
        flags,
        flags & ~(IORING_SETUP_DEFER_TASKRUN),
        flags & ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER),
        flags & ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL),
    };
    int ret = -EINVAL;
    for (int i = 0; i < 4; i++) {
        if (i > 0 && attempts[i] == attempts[i - 1]) continue;
        ret = io_uring_queue_init(entries, ring, attempts[i]);
        if (ret == 0) { if (applied_flags) *applied_flags = attempts[i]; return 0; }
        if (ret != -EINVAL) return ret;
    }
    return ret;
}

int sb_ring_enable(struct io_uring *ring) {
    int ret = io_uring_register(ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return ret < 0 ? ret : 0;
}

struct io_uring_buf_ring *sb_setup_buf_ring(struct io_uring *ring, unsigned nentries, int bgid, int *err) {
    size_t size = (size_t)nentries * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) { *err = -errno; return NULL; }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)mem;
    reg.ring_entries = nentries;
    reg.bgid = (unsigned short)bgid;
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret) { munmap(mem, size); *err = ret; return NULL; }
    struct io_uring_buf_ring *br = (struct io_uring_buf_ring *)mem;
    io_uring_buf_ring_init(br);
    *err = 0;
    return br;
}

void sb_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned nentries, int bgid) {
    io_uring_unregister_buf_ring(ring, bgid);
    munmap(br, (size_t)nentries * sizeof(struct io_uring_buf));
}

int sb_submit_and_wait(struct io_uring *ring, unsigned wait_nr, int64_t timeout_ns) {
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts;
    int ret;
    // One exit, so the measurement build's hooks (sb_user_tsc.h) enclose every path.
    sb_user_tsc_enter(SB_USER_TSC_WAIT);
    if (wait_nr == 0) {
        ret = io_uring_submit(ring);
    } else if (timeout_ns < 0) {
        ret = io_uring_submit_and_wait(ring, wait_nr);
    } else {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        ret = io_uring_submit_and_wait_timeout(ring, &cqe, wait_nr, &ts, NULL);
    }
    sb_user_tsc_leave();
    return ret;
}

// IORING_FEAT_MIN_TIMEOUT (Linux 6.12): `io_uring_getevents_arg`'s `pad` is `min_wait_usec`.
// liburing 2.3's headers predate both names; the layout is the same.
#define SB_FEAT_MIN_TIMEOUT (1U << 15)
// liburing 2.3's INT_FLAG_REG_RING (src/int_flags.h): the ring fd is a registered index.
#define SB_INT_FLAG_REG_RING 1

void sb_prep_nop(struct io_uring_sqe *sqe, uint64_t user_data) {
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, user_data);
}

int sb_batch_wait_supported(struct io_uring *ring) {
    return (ring->features & SB_FEAT_MIN_TIMEOUT) != 0 && (ring->features & IORING_FEAT_EXT_ARG) != 0
        && !(ring->flags & IORING_SETUP_SQPOLL);
}

int sb_submit_and_wait_batch(struct io_uring *ring, unsigned wait_nr, int64_t timeout_ns, uint32_t batch_wait_us,
                             int refuse_for_testing) {
    // liburing's __io_uring_flush_sq (static in 2.3), without SQPOLL (checked by the caller
    // through sb_batch_wait_supported): publish the new SQ tail, count what the kernel has
    // not consumed.
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        IO_URING_WRITE_ONCE(*sq->ktail, tail);
    }
    unsigned submit = tail - *sq->khead;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.sigmask_sz = _NSIG / 8;
    arg.pad = batch_wait_us;  // min_wait_usec
    // Always a timeout: without one the kernel ends the wait when the batch wait passes,
    // events or not (io_cqring_min_timer_wakeup), and "forever" would spin every window.
    if (timeout_ns < 0) timeout_ns = 86400LL * 1000000000LL;
    ts.tv_sec = timeout_ns / 1000000000LL;
    ts.tv_nsec = timeout_ns % 1000000000LL;
    arg.ts = (uint64_t)(uintptr_t)&ts;
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    if (ring->int_flags & SB_INT_FLAG_REG_RING) flags |= IORING_ENTER_REGISTERED_RING;
    // io_get_ext_arg checks argsz against its own struct: one byte short is -EINVAL.
    size_t argument_bytes = refuse_for_testing ? sizeof(arg) - 1 : sizeof(arg);
    sb_user_tsc_enter(SB_USER_TSC_WAIT);
    int ret = (int)syscall(__NR_io_uring_enter, ring->enter_ring_fd, submit, wait_nr, flags, &arg, argument_bytes);
    sb_user_tsc_leave();
    return ret < 0 ? -errno : ret;
}

struct io_uring_sqe *sb_get_sqe_after_submit(struct io_uring *ring) {
    if (io_uring_submit(ring) < 0) return NULL;
    return io_uring_get_sqe(ring);
}

int sb_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    return pthread_setname_np(pthread_self(), buf);
}

int sb_set_thread_affinity(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int sb_gettid(void) { return (int)gettid(); }

int sb_accept4(int fd) {
    int r = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return r < 0 ? -errno : r;
}

int sb_eventfd(void) {
    int r = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return r < 0 ? -errno : r;
}

int sb_eventfd_signal(int fd) {
    uint64_t one = 1;
    sb_user_tsc_enter(SB_USER_TSC_OTHER);
    ssize_t r = write(fd, &one, sizeof(one));
    sb_user_tsc_leave();
    return r < 0 ? -errno : 0;
}

int sb_eventfd_drain(int fd) {
    uint64_t value;
    sb_user_tsc_enter(SB_USER_TSC_OTHER);
    ssize_t r = read(fd, &value, sizeof(value));
    sb_user_tsc_leave();
    return r < 0 ? -errno : 0;
}

// A periodic CLOCK_MONOTONIC timer: it first expires at `first_ns` (absolute, the clock of
// sb_monotonic_ns), then every `interval_ns`. Non-blocking, close-on-exec. Returns the fd or
// -errno. A shard waits on it for its tick instead of sleeping with a timeout (see
// TickTimer.swift).
int sb_timerfd_periodic(int64_t first_ns, int64_t interval_ns) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return -errno;
    struct itimerspec its;
    its.it_value.tv_sec = (time_t)(first_ns / 1000000000LL);
    its.it_value.tv_nsec = (long)(first_ns % 1000000000LL);
    its.it_interval.tv_sec = (time_t)(interval_ns / 1000000000LL);
    its.it_interval.tv_nsec = (long)(interval_ns % 1000000000LL);
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

// Reads (and so resets) a timerfd's expiration count: 0 when nothing expired since the last
// read (EAGAIN), else the count, or -errno.
int64_t sb_timerfd_drain(int fd) {
    uint64_t expirations;
    ssize_t r = read(fd, &expirations, sizeof(expirations));
    if (r < 0) return errno == EAGAIN ? 0 : -errno;
    return (int64_t)expirations;
}

int sb_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int sb_wait_termination_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    int r = sigwait(&set, &sig);
    return r == 0 ? sig : -r;
}

int sb_ignore_sigpipe(void) {
    return signal(SIGPIPE, SIG_IGN) == SIG_ERR ? -errno : 0;
}

int sb_epoll_create(void) {
    int r = epoll_create1(EPOLL_CLOEXEC);
    return r < 0 ? -errno : r;
}

int sb_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    sb_user_tsc_enter(SB_USER_TSC_OTHER);
    int r = epoll_ctl(epfd, op, fd, &ev);
    sb_user_tsc_leave();
    return r < 0 ? -errno : 0;
}

// read(2), write(2), writev(2) and epoll_wait(2) as bare system calls: glibc's own wrappers are
// cancellation points, which in a threaded process wrap each system call in
// __pthread_enable_asynccancel / __pthread_disable_asynccancel (~60 instructions per echoed
// message, issue 16 item 3), and syscall(2) itself moves all six argument registers and sets
// errno (~15 instructions a call, three calls per echo). Switchboard never cancels a thread.
// `sb_syscall6` returns the kernel's result: -errno on failure. Elsewhere than x86-64 and arm64,
// syscall(2) with the same convention.
static inline long sb_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
#if defined(__x86_64__)
    // Before the register variables: the hook may call functions (clang binds them only at the
    // asm statement, gcc does not promise to keep them across a call).
    sb_user_tsc_enter(n == SYS_recvfrom ? SB_USER_TSC_RECEIVE
                      : n == SYS_sendto || n == SYS_sendmsg ? SB_USER_TSC_SEND
                      : n == SYS_epoll_pwait ? SB_USER_TSC_WAIT : SB_USER_TSC_OTHER);
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile ("syscall"
                      : "=a"(ret)
                      : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                      : "rcx", "r11", "memory");
    sb_user_tsc_leave();
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a1;
    register long x1 __asm__("x1") = a2;
    register long x2 __asm__("x2") = a3;
    register long x3 __asm__("x3") = a4;
    register long x4 __asm__("x4") = a5;
    register long x5 __asm__("x5") = a6;
    __asm__ volatile ("svc 0"
                      : "+r"(x0)
                      : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                      : "memory", "cc");
    return x0;
#else
    long r = syscall(n, a1, a2, a3, a4, a5, a6);
    return r < 0 ? -errno : r;
#endif
}

// A bare system call's result as the libc functions give it: -1 and errno on failure.
static inline ssize_t sb_errno_result(long r) {
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

// Reads go through recvfrom, not read(2), for the same reason as the sends below: read(2) on
// a socket passes through vfs_read (fdget_pos, rw_verify_area, fsnotify) before
// sock_read_iter reaches sock_recvmsg. Echo at 1,000 connections on epoll: vfs_read and
// fdget_pos were 3.4% of the server's samples, where uWebSockets' recvfrom shows fdget at 1.2%
// (perf, same run). Every fd a shard reads is a socket (its sends already need one).
ssize_t sb_recv(int fd, void *buf, size_t count) {
    return sb_errno_result(sb_syscall6(SYS_recvfrom, fd, (long)buf, (long)count, 0, 0, 0));
}
// Sends go through sendto/sendmsg, not write/writev: write(2) on a socket passes through
// vfs_write (fdget_pos, rw_verify_area, fsnotify on the socket's inode) before
// sock_write_iter reaches sock_sendmsg. At 1 -> 10,000 fan-out, where every write is to a
// socket whose kernel structures are cold, vfs_write + fdget_pos + sock_write_iter were 9.9%
// of the server's samples against 4.9% for uWebSockets' __sys_sendto + fdget (perf, same
// run). MSG_NOSIGNAL: no SIGPIPE even if an embedding program restored its default.
ssize_t sb_send(int fd, const void *buf, size_t count) {
    return sb_errno_result(sb_syscall6(SYS_sendto, fd, (long)buf, (long)count, MSG_NOSIGNAL, 0, 0));
}
ssize_t sb_sendv(int fd, const struct iovec *iov, int iovcnt) {
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    return sb_errno_result(sb_syscall6(SYS_sendmsg, fd, (long)&msg, MSG_NOSIGNAL, 0, 0, 0));
}

int sb_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n;
    // epoll_pwait with no mask is epoll_wait (the one both x86-64 and arm64 have), without
    // the cancellation wrapper (see sb_recv).
    do { n = (int)sb_syscall6(SYS_epoll_pwait, epfd, (long)evs, max, timeout_ms, 0, 8); } while (n == -EINTR);
    if (n < 0) return n;
    for (int i = 0; i < n; i++) { data[i] = evs[i].data.u64; events[i] = evs[i].events; }
    return n;
}

// The socket address of a numeric IPv4 or IPv6 `host` and `port` (no name lookup: callers
// resolve first), shared by sb_listen_tcp and sb_connect_tcp. Returns the family, or -EINVAL
// when `host` is neither form; `*len` is the address's length for bind/connect.
static int sb_sockaddr_numeric(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET; v4->sin_port = htons((uint16_t)port); *len = sizeof(*v4);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6; v6->sin6_port = htons((uint16_t)port); *len = sizeof(*v6);
        return AF_INET6;
    }
    return -EINVAL;
}

int sb_listen_tcp(const char *host, int port, int backlog, bool nonblocking) {
    struct sockaddr_storage ss;
    socklen_t len;
    int family = sb_sockaddr_numeric(host, port, &ss, &len);
    if (family < 0) return family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) { int e = -errno; close(fd); return e; }
    if (listen(fd, backlog) < 0) { int e = -errno; close(fd); return e; }
    return fd;
}

int sb_connect_tcp(const char *host, int port, int *in_progress) {
    struct sockaddr_storage ss;
    socklen_t len;
    int family = sb_sockaddr_numeric(host, port, &ss, &len);
    if (family < 0) return family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    *in_progress = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno == EINPROGRESS) { *in_progress = 1; return fd; }
        int e = -errno; close(fd); return e;
    }
    return fd;
}

int sb_socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return err;
}

int sb_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int sb_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

int sb_set_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}

int64_t sb_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long sb_raise_nofile_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    return (long)rl.rlim_cur;
}

void sb_prep_cancel(struct io_uring_sqe *sqe, uint64_t target_user_data, uint64_t user_data) {
    io_uring_prep_cancel64(sqe, target_user_data, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void sb_prep_poll_add(struct io_uring_sqe *sqe, int fd, unsigned mask, uint64_t user_data) {
    io_uring_prep_poll_add(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, user_data);
}

void sb_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned len, uint64_t user_data) {
    io_uring_prep_read(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

void sb_prep_multishot_accept(struct io_uring_sqe *sqe, int fd, uint64_t user_data) {
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
}

void sb_prep_msg_ring(struct io_uring_sqe *sqe, int ring_fd, uint32_t len, uint64_t data, uint64_t user_data) {
    io_uring_prep_msg_ring(sqe, ring_fd, len, data, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

void sb_prep_timeout(struct io_uring_sqe *sqe, struct __kernel_timespec *ts, uint64_t user_data) {
    io_uring_prep_timeout(sqe, ts, 0, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

int sb_ring_fd(struct io_uring *ring) { return ring->ring_fd; }

// Direct descriptors (UringShard): a socket held in the ring's registered file table instead of
// the process's descriptor table. A table of `count` empty slots; the kernel refuses more than
// RLIMIT_NOFILE (-EMFILE) or a kernel without sparse tables (-EINVAL, before 5.19).
int sb_register_files_sparse(struct io_uring *ring, unsigned count) {
    return io_uring_register_files_sparse(ring, count);
}

// Puts `fd` into slot `index` of the table (the kernel takes its own reference: the caller
// still closes `fd`), or empties the slot when `fd` is -1 (the file is released once the
// operations that hold it complete). Synchronous, so the slot's state is known when it returns.
// 0, or -errno.
int sb_register_file_at(struct io_uring *ring, unsigned index, int fd) {
    int r = io_uring_register_files_update(ring, index, &fd, 1);
    if (r == 1) return 0;
    return r < 0 ? r : -EIO;
}

void sb_prep_shutdown(struct io_uring_sqe *sqe, int fd, int how, uint64_t user_data) {
    io_uring_prep_shutdown(sqe, fd, how);
    io_uring_sqe_set_data64(sqe, user_data);
}

// The kernel worker threads (io-wq) of the calling thread's rings: at most `bounded` for work
// that completes in bounded time and `unbounded` for the rest (a shutdown is bounded work), 0
// leaving a value as it is. On return the two values hold the limits before the call, so a
// call with two zeros reads them (zeros while the thread has not submitted yet: the kernel
// applies the limit when it creates the thread's work queue). 0, or -errno (-EINVAL before 5.15).
int sb_register_worker_limits(struct io_uring *ring, unsigned *bounded, unsigned *unbounded) {
    unsigned values[2] = { *bounded, *unbounded };
    int r = io_uring_register_iowq_max_workers(ring, values);
    if (r < 0) return r;
    *bounded = values[0];
    *unbounded = values[1];
    return 0;
}

int sb_submit_and_get_events(struct io_uring *ring) {
    sb_user_tsc_enter(SB_USER_TSC_WAIT);
    int ret = io_uring_submit_and_get_events(ring);
    sb_user_tsc_leave();
    return ret;
}

int sb_submit_then_poll(struct io_uring *ring, int timeout_ms) {
    int ret = io_uring_submit(ring);
    if (ret < 0) return ret;
    struct pollfd p = { .fd = ring->ring_fd, .events = POLLIN, .revents = 0 };
    // Readable once a completion is posted (or already is); the caller reaps with
    // sb_submit_and_get_events.
    ret = poll(&p, 1, timeout_ms);
    return ret < 0 ? -errno : ret;
}

static __thread void *sb_tls_shard = NULL;
void sb_set_current_shard(void *shard) { sb_tls_shard = shard; }
void *sb_current_shard(void) { return sb_tls_shard; }

#include <malloc.h>
size_t sb_malloc_in_use(void) { return mallinfo2().uordblks; }
void sb_malloc_statistics(size_t *in_use_bytes, size_t *free_bytes) {
    struct mallinfo2 info = mallinfo2();
    *in_use_bytes = info.uordblks + info.hblkhd;
    *free_bytes = info.fordblks;
}
/* glibc's trim and mmap thresholds (MallocTrim.swift); 1 when both were taken. */
int sb_malloc_set_thresholds(int trim_bytes, int mmap_bytes) {
    return mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1;
}

#ifdef SB_USER_TSC
// A measurement build's mark at the top of each loop turn (cliburing.h): the stretch up to here
// is filed under the call before it and "turn", the next under "turn" and the call after it.
void sb_user_tsc_turn(void) { sb_user_tsc_enter(SB_USER_TSC_TURN); sb_user_tsc_leave(); }
#endif
