#include "copenssl_tls.h"
#include "tls_read.h"
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <openssl/core_names.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct sb_tls_conn {
    SSL *ssl;
    BIO *rbio;  /* ciphertext in: fed by the shard */
    BIO *wbio;  /* ciphertext out: taken by the shard into the send queue */
    int renegotiations;
};

/* Mozilla "intermediate" TLS 1.2 list: ECDHE/DHE key exchange, AEAD only. TLS 1.3 keeps
 * OpenSSL's default suites (all AEAD). */
static const char *k_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

/* ---- ticket keys: process-wide, so a certificate reload does not void tickets ---- */

typedef struct {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int valid;
} ticket_key;

static pthread_mutex_t g_ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static ticket_key g_current, g_previous;
static time_t g_current_since;
static long g_rotation_seconds = 3600;
static long g_generations;

static int new_ticket_key_locked(void) {
    ticket_key k;
    if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
        RAND_bytes(k.hmac, sizeof k.hmac) != 1) return -1;
    k.valid = 1;
    g_previous = g_current;
    g_current = k;
    g_current_since = time(NULL);
    g_generations++;
    return 0;
}

void sb_tls_set_ticket_rotation_seconds(long seconds) {
    pthread_mutex_lock(&g_ticket_lock);
    g_rotation_seconds = seconds > 0 ? seconds : 1;
    pthread_mutex_unlock(&g_ticket_lock);
}

long sb_tls_ticket_key_generations(void) {
    pthread_mutex_lock(&g_ticket_lock);
    long n = g_generations;
    pthread_mutex_unlock(&g_ticket_lock);
    return n;
}

void sb_tls_rotate_ticket_key(void) {
    pthread_mutex_lock(&g_ticket_lock);
    (void)new_ticket_key_locked();
    pthread_mutex_unlock(&g_ticket_lock);
}

/* 1: key found (or a new ticket encrypted); 2: decrypted with the previous key, so OpenSSL
 * issues a fresh ticket under the current one; 0: unknown key (full handshake); -1: error. */
static int ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
    (void)s;
    ticket_key k;
    int result;
    pthread_mutex_lock(&g_ticket_lock);
    if (!g_current.valid || time(NULL) - g_current_since >= g_rotation_seconds) {
        if (new_ticket_key_locked() != 0) { pthread_mutex_unlock(&g_ticket_lock); return -1; }
    }
    if (enc) {
        k = g_current;
        result = 1;
    } else if (memcmp(key_name, g_current.name, 16) == 0) {
        k = g_current;
        result = 1;
    } else if (g_previous.valid && memcmp(key_name, g_previous.name, 16) == 0) {
        k = g_previous;
        result = 2;
    } else {
        pthread_mutex_unlock(&g_ticket_lock);
        return 0;
    }
    pthread_mutex_unlock(&g_ticket_lock);

    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) result = -1;
        else if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) result = -1;
    } else {
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) result = -1;
    }
    if (result > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1) result = -1;
    OPENSSL_cleanse(&k, sizeof k);
    return result;
}

/* ---- contexts ---- */

static int g_sni_index = -1;
static int g_conn_index = -1;
static pthread_once_t g_index_once = PTHREAD_ONCE_INIT;

typedef struct {
    SSL_CTX **ctxs;
    int count;
} sni_list;

static void sni_list_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    sni_list *l = ptr;
    if (!l) return;
    for (int i = 0; i < l->count; i++) SSL_CTX_free(l->ctxs[i]);
    OPENSSL_free(l->ctxs);
    OPENSSL_free(l);
}

static void init_indexes(void) {
    g_sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_list_free);
    g_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int servername_cb(SSL *s, int *alert, void *arg) {
    (void)alert; (void)arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_NOACK;
    sni_list *l = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), g_sni_index);
    if (!l) return SSL_TLSEXT_ERR_NOACK;
    for (int i = 0; i < l->count; i++) {
        X509 *leaf = SSL_CTX_get0_certificate(l->ctxs[i]);
        if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(s, l->ctxs[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    /* No extra certificate matches: the default one answers (as nginx's default server). */
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
    (void)s; (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
    /* A client offering only h2: go on without ALPN rather than fail (it may still speak 1.1). */
    return SSL_TLSEXT_ERR_NOACK;
}

/* A renegotiation attempt (a ClientHello after the handshake) is refused by
 * SSL_OP_NO_RENEGOTIATION, which answers with a no_renegotiation alert; OpenSSL reports the
 * refused ClientHello to no callback, so the alert we send is what is counted here. The shard
 * closes the connection when it sees the count. An info callback, not a message callback: a
 * message callback runs for every record's header (and TLS 1.3's inner content type), four
 * times per echoed message; the info callback runs on handshake steps and alerts only. */
static void info_cb(const SSL *s, int where, int ret) {
    if ((where & SSL_CB_WRITE_ALERT) != SSL_CB_WRITE_ALERT) return;
    if ((ret & 0xff) != SSL_AD_NO_RENEGOTIATION) return;
    sb_tls_conn *c = SSL_get_ex_data(s, g_conn_index);
    if (c) c->renegotiations++;
}

static void put_error(char *err, size_t err_len, const char *what, const char *path) {
    if (!err || err_len == 0) return;
    char detail[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    if (path) snprintf(err, err_len, "%s (%s)%s%s", what, path, detail[0] ? ": " : "", detail);
    else snprintf(err, err_len, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

sb_tls_ctx *sb_tls_ctx_new(const char *chain_path, const char *key_path, char *err, size_t err_len) {
    pthread_once(&g_index_once, init_indexes);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { put_error(err, err_len, "SSL_CTX_new failed", NULL); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_COMPRESSION | SSL_OP_SINGLE_ECDH_USE);
    /* Memory BIOs: a record may be written in parts across SSL_write calls. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, k_tls12_ciphers) != 1) {
        put_error(err, err_len, "cipher policy refused", NULL); SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, chain_path) != 1) {
        put_error(err, err_len, "cannot load the certificate chain", chain_path); SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the key against the certificate while loading it. */
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        put_error(err, err_len, mismatch ? "the private key does not match the certificate"
                                         : "cannot load the private key", key_path);
        SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        put_error(err, err_len, "the private key does not match the certificate", key_path); SSL_CTX_free(ctx); return NULL;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        put_error(err, err_len, "the certificate has expired", chain_path); SSL_CTX_free(ctx); return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
        put_error(err, err_len, "the certificate is not valid yet", chain_path); SSL_CTX_free(ctx); return NULL;
    }
    /* Resumption by stateless tickets only (no per-process session cache to share). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid_ctx[] = "switchboard";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_info_callback(ctx, info_cb);
    return ctx;
}

int sb_tls_ctx_add_sni(sb_tls_ctx *main_ctx, sb_tls_ctx *extra) {
    sni_list *l = SSL_CTX_get_ex_data(main_ctx, g_sni_index);
    if (!l) {
        l = OPENSSL_zalloc(sizeof *l);
        if (!l) return -1;
        if (SSL_CTX_set_ex_data(main_ctx, g_sni_index, l) != 1) { OPENSSL_free(l); return -1; }
    }
    SSL_CTX **grown = OPENSSL_realloc(l->ctxs, sizeof(SSL_CTX *) * (size_t)(l->count + 1));
    if (!grown) return -1;
    l->ctxs = grown;
    SSL_CTX_up_ref(extra);
    l->ctxs[l->count++] = extra;
    return 0;
}

void sb_tls_ctx_free(sb_tls_ctx *ctx) { SSL_CTX_free(ctx); }

/* ---- connections ---- */

sb_tls_conn *sb_tls_conn_new(sb_tls_ctx *ctx) {
    sb_tls_conn *c = OPENSSL_zalloc(sizeof *c);
    if (!c) return NULL;
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        if (c->ssl) SSL_free(c->ssl);
        BIO_free(c->rbio); BIO_free(c->wbio);
        OPENSSL_free(c);
        return NULL;
    }
    /* An empty read BIO means "no data yet", not EOF. */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);  /* the SSL owns both BIOs from here */
    SSL_set_accept_state(c->ssl);
    SSL_set_ex_data(c->ssl, g_conn_index, c);
    return c;
}

sb_tls_ctx *sb_tls_bench_client_ctx_new(void) {
    pthread_once(&g_index_once, init_indexes);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    return ctx;
}

sb_tls_conn *sb_tls_conn_new_client(sb_tls_ctx *ctx) {
    sb_tls_conn *c = sb_tls_conn_new(ctx);
    if (c) SSL_set_connect_state(c->ssl);
    return c;
}

void sb_tls_conn_free(sb_tls_conn *c) {
    if (!c) return;
    SSL_free(c->ssl);
    OPENSSL_free(c);
}

int sb_tls_feed(sb_tls_conn *c, const void *bytes, size_t len) {
    if (len == 0) return 0;
    return BIO_write(c->rbio, bytes, (int)len) == (int)len ? (int)len : -1;
}

int sb_tls_handshake(sb_tls_conn *c) {
    sb_tls_clear_stale_errors();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) return 1;
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    return -1;
}

int sb_tls_read(sb_tls_conn *c, void *out, size_t cap) { return sb_tls_read_mapped(c->ssl, out, cap); }

/* Whether another sb_tls_read may return something: ciphertext not yet read from the read BIO,
 * or a record (decrypted or not) buffered inside the SSL. When neither, SSL_read would answer
 * "want read": the shard skips that call (one per received batch; with SSL_get_error and the
 * error-queue check it cost about as much as the read that returned data). A partial record
 * already moved into the SSL answers true here and "want read" from SSL_read: a wasted call,
 * never a lost byte. */
int sb_tls_has_input(sb_tls_conn *c) { return BIO_ctrl_pending(c->rbio) > 0 || SSL_has_pending(c->ssl); }

int sb_tls_write(sb_tls_conn *c, const void *bytes, size_t len) {
    sb_tls_clear_stale_errors();
    size_t done = 0;
    while (done < len) {
        size_t written = 0;
        if (SSL_write_ex(c->ssl, (const unsigned char *)bytes + done, len - done, &written) != 1) return -1;
        done += written;
    }
    return (int)len;
}

void sb_tls_close_notify(sb_tls_conn *c) {
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t sb_tls_pending_out(sb_tls_conn *c) { return BIO_ctrl_pending(c->wbio); }

int sb_tls_take_out(sb_tls_conn *c, void *out, size_t cap) {
    int n = BIO_read(c->wbio, out, (int)cap);
    return n > 0 ? n : 0;
}

int sb_tls_renegotiation_attempts(sb_tls_conn *c) { return c->renegotiations; }
int sb_tls_session_reused(sb_tls_conn *c) { return SSL_session_reused(c->ssl); }
const char *sb_tls_version(sb_tls_conn *c) { return SSL_get_version(c->ssl); }

int sb_tls_alpn(sb_tls_conn *c, char *out, size_t cap) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    if (!p || n == 0 || n + 1 > cap) { if (cap) out[0] = 0; return 0; }
    memcpy(out, p, n);
    out[n] = 0;
    return (int)n;
}

int sb_tls_server_name(sb_tls_conn *c, char *out, size_t cap) {
    const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || cap == 0) { if (cap) out[0] = 0; return 0; }
    size_t n = strlen(name);
    if (n + 1 > cap) n = cap - 1;
    memcpy(out, name, n);
    out[n] = 0;
    return (int)n;
}

void sb_tls_error(char *out, size_t cap) {
    if (cap == 0) return;
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, out, cap); else snprintf(out, cap, "unknown TLS error");
    ERR_clear_error();
}
