#ifndef SWITCHBOARD_COPENSSL_TLS_READ_H
#define SWITCHBOARD_COPENSSL_TLS_READ_H
/* Private to COpenSSL (outside include/: not part of the module Swift imports). Shared by
 * tls.c (the shards' server side, memory BIOs) and tls_client.c (the SDK's client, a socket
 * BIO), which report SSL_read's outcome to Swift the same way. */
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Empties this thread's OpenSSL error queue when something is on it. SSL_get_error reads the
 * queue first, so an error left by an earlier call on this thread (a failed JWT signature
 * check, another connection's bad record) would turn "want read" into a failure: the queue
 * must be empty before every call whose failure we map. ERR_clear_error costs ~150 ns in
 * OpenSSL 3.0 even on an empty queue (it resets all 16 slots and frees 32 NULL pointers);
 * ERR_peek_error on an empty queue is the thread-state lookup only. Per TLS echo this was
 * three ERR_clear_error calls, ~5% of the server's CPU. */
static inline void sb_tls_clear_stale_errors(void) {
    if (ERR_peek_error() != 0) ERR_clear_error();
}

/* One SSL_read into `out`, as sb_tls_read and sb_tls_client_read return it: >0 bytes,
 * 0 needs more input (or output first), -1 the peer closed, -2 failed (the error queue says
 * why: sb_tls_error). "Closed" is close_notify, or EOF without one: SSL_ERROR_SYSCALL with an
 * empty error queue, which only the client's socket BIO reports (an empty memory BIO of the
 * server answers "retry": BIO_set_mem_eof_return(-1) in sb_tls_conn_new). */
static inline int sb_tls_read_mapped(SSL *ssl, void *out, size_t cap) {
    sb_tls_clear_stale_errors();
    int rc = SSL_read(ssl, out, (int)cap);
    if (rc > 0) return rc;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -1;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return -1;
    return -2;
}

#endif
