#include "copenssl_tls.h"
#include "tls_read.h"
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct sb_tls_client {
    SSL_CTX *ctx;
    SSL *ssl;
};

static void client_error(char *err, size_t err_len, const char *what, SSL *ssl) {
    if (!err || err_len == 0) return;
    char detail[256] = "";
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (verify != X509_V_OK) snprintf(detail, sizeof detail, "certificate verification failed: %s", X509_verify_cert_error_string(verify));
    else if (e) ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    snprintf(err, err_len, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

/* A socket BIO that sends with MSG_NOSIGNAL: a write to a connection the peer dropped must
 * be an error, not SIGPIPE killing an application that did not ignore it. */
static BIO_METHOD *g_nosig_method;
static pthread_once_t g_nosig_once = PTHREAD_ONCE_INIT;

static int nosig_write(BIO *b, const char *data, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do { n = send(fd, data, (size_t)len, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}

static int nosig_read(BIO *b, char *out, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do { n = recv(fd, out, (size_t)len, 0); } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int nosig_create(BIO *b) { BIO_set_init(b, 1); return 1; }

static void nosig_init_method(void) {
    g_nosig_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "switchboard socket");
    if (!g_nosig_method) return;
    BIO_meth_set_write(g_nosig_method, nosig_write);
    BIO_meth_set_read(g_nosig_method, nosig_read);
    BIO_meth_set_ctrl(g_nosig_method, nosig_ctrl);
    BIO_meth_set_create(g_nosig_method, nosig_create);
}

static int is_ip_literal(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

sb_tls_client *sb_tls_client_new(int fd, const char *host, const char *ca_file, char *err, size_t err_len) {
    ERR_clear_error();
    sb_tls_client *c = OPENSSL_zalloc(sizeof *c);
    if (!c) { client_error(err, err_len, "out of memory", NULL); return NULL; }
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) { client_error(err, err_len, "SSL_CTX_new failed", NULL); OPENSSL_free(c); return NULL; }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int loaded = ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(c->ctx);
    if (loaded != 1) {
        client_error(err, err_len, ca_file ? "cannot load the CA file" : "cannot load the system trust store", NULL);
        sb_tls_client_free(c); return NULL;
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof alpn - 1);
    pthread_once(&g_nosig_once, nosig_init_method);
    c->ssl = SSL_new(c->ctx);
    BIO *bio = g_nosig_method ? BIO_new(g_nosig_method) : NULL;
    if (!c->ssl || !bio) { BIO_free(bio); client_error(err, err_len, "SSL_new failed", NULL); sb_tls_client_free(c); return NULL; }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(c->ssl, bio, bio);
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    if (is_ip_literal(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, host);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(c->ssl, host);
    }
    /* A non-blocking socket: a write that would block is retried later with the rest of the
     * bytes, possibly from another buffer address; progress is reported record by record. */
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return c;
}

int sb_tls_client_handshake(sb_tls_client *c, char *err, size_t err_len) {
    ERR_clear_error();
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        /* From here a read that processed only a non-data record (a TLS 1.3 ticket) returns
         * instead of waiting for more: the reader then waits for readiness again. */
        SSL_clear_mode(c->ssl, SSL_MODE_AUTO_RETRY);
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) return 2;
    client_error(err, err_len, "TLS handshake failed", c->ssl);
    return -1;
}

int sb_tls_client_read(sb_tls_client *c, void *out, size_t cap) { return sb_tls_read_mapped(c->ssl, out, cap); }

int sb_tls_client_write_some(sb_tls_client *c, const void *bytes, size_t len) {
    ERR_clear_error();
    size_t written = 0;
    if (SSL_write_ex(c->ssl, bytes, len, &written) == 1) return (int)written;
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_WANT_READ) return -3;
    return -1;
}

int sb_tls_client_pending(sb_tls_client *c) { return SSL_pending(c->ssl) + (SSL_has_pending(c->ssl) ? 1 : 0); }

void sb_tls_client_free(sb_tls_client *c) {
    if (!c) return;
    if (c->ssl) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    OPENSSL_free(c);
}
