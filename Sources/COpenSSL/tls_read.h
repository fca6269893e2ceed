#ifndef SWITCHBOARD_COPENSSL_TLS_READ_H
#define SWITCHBOARD_COPENSSL_TLS_READ_H
/* Private to COpenSSL (outside include/: not part of the module Swift imports). Shared by
 * tls.c (the shards' server side, memory BIOs) and tls_client.c (the SDK's client, a socket
 * BIO), which report SSL_read's outcome to Swift the same way. */
#include <openssl/err.h>
#include <openssl/ssl.h>

/* One SSL_read into `out`, as sb_tls_read and sb_tls_client_read return it: >0 bytes,
 * 0 needs more input (or output first), -1 the peer closed, -2 failed (the error queue says
 * why: sb_tls_error). "Closed" is close_notify, or EOF without one: SSL_ERROR_SYSCALL with an
 * empty error queue, which only the client's socket BIO reports (an empty memory BIO of the
 * server answers "retry": BIO_set_mem_eof_return(-1) in sb_tls_conn_new). */
static inline int sb_tls_read_mapped(SSL *ssl, void *out, size_t cap) {
    ERR_clear_error();
    int rc = SSL_read(ssl, out, (int)cap);
    if (rc > 0) return rc;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -1;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return -1;
    return -2;
}

#endif
