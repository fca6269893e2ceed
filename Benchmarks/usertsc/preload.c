// The C++ peer's user time by the time-stamp counter (issue 16 item 3): an LD_PRELOAD library
// that wraps the system calls uWebSockets makes (strace -c during echo: sendto, recvfrom,
// epoll_wait; and the rare read, write, writev, epoll_ctl, accept4, close, shutdown,
// setsockopt, fcntl) with the same counting hooks as Switchboard's measurement build
// (Sources/CLiburing/sb_user_tsc.h, included below), so both sides are measured by one rule.
// A call it does not wrap is counted as the peer's user time: an overcount, never an undercount.
//
// The wrapped functions are glibc's, so glibc's own wrapper (its cancellation bookkeeping, ~60
// instructions) lands on the kernel side for the peer. Switchboard makes its calls bare.
//
//   gcc -O2 -shared -fPIC -DSB_USER_TSC -o usertsc-preload.so Benchmarks/usertsc/preload.c -ldl
//   SB_USER_TSC_FILE=/tmp/peer.tsc LD_PRELOAD=$PWD/usertsc-preload.so /work/peer-uws/peer-uws ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "../../Sources/CLiburing/sb_user_tsc.h"

#ifndef SB_USER_TSC
#error "build with -DSB_USER_TSC"
#endif

// Resolves the next definition of `name` once; the first call of each wrapper pays for dlsym.
#define SB_NEXT(type, name, params) \
    static type (*next)params; \
    if (!next) next = (type (*)params)dlsym(RTLD_NEXT, name);

#define SB_WRAP(kind, type, name, params, args) \
    type name params { \
        SB_NEXT(type, #name, params) \
        sb_user_tsc_enter(kind); \
        type r = next args; \
        sb_user_tsc_leave(); \
        return r; \
    }

SB_WRAP(SB_USER_TSC_SEND, ssize_t, send, (int fd, const void *buf, size_t n, int flags), (fd, buf, n, flags))
SB_WRAP(SB_USER_TSC_RECEIVE, ssize_t, recv, (int fd, void *buf, size_t n, int flags), (fd, buf, n, flags))
SB_WRAP(SB_USER_TSC_SEND, ssize_t, sendto, (int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t l), (fd, buf, n, flags, a, l))
SB_WRAP(SB_USER_TSC_RECEIVE, ssize_t, recvfrom, (int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *l), (fd, buf, n, flags, a, l))
SB_WRAP(SB_USER_TSC_RECEIVE, ssize_t, read, (int fd, void *buf, size_t n), (fd, buf, n))
SB_WRAP(SB_USER_TSC_SEND, ssize_t, write, (int fd, const void *buf, size_t n), (fd, buf, n))
SB_WRAP(SB_USER_TSC_SEND, ssize_t, writev, (int fd, const struct iovec *iov, int n), (fd, iov, n))
SB_WRAP(SB_USER_TSC_WAIT, int, epoll_wait, (int epfd, struct epoll_event *ev, int max, int timeout), (epfd, ev, max, timeout))
SB_WRAP(SB_USER_TSC_OTHER, int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *ev), (epfd, op, fd, ev))
SB_WRAP(SB_USER_TSC_OTHER, int, accept4, (int fd, struct sockaddr *a, socklen_t *l, int flags), (fd, a, l, flags))
SB_WRAP(SB_USER_TSC_OTHER, int, close, (int fd), (fd))
SB_WRAP(SB_USER_TSC_OTHER, int, shutdown, (int fd, int how), (fd, how))
SB_WRAP(SB_USER_TSC_OTHER, int, setsockopt, (int fd, int level, int name, const void *v, socklen_t l), (fd, level, name, v, l))

// fcntl is variadic: uWebSockets passes an int (F_GETFL/F_SETFL/F_SETFD).
int fcntl(int fd, int cmd, ...) {
    SB_NEXT(int, "fcntl", (int, int, ...))
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    sb_user_tsc_enter(SB_USER_TSC_OTHER);
    int r = next(fd, cmd, arg);
    sb_user_tsc_leave();
    return r;
}
