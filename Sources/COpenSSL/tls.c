#include "copenssl_tls.h"
#include "tls_read.h"
#include "tls13_records.h"
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

/* Where a connection's records are made once its handshake is over. */
enum record_layer {
    RECORDS_OPENSSL = 0,  /* SSL_read / SSL_write through the memory BIOs (TLS 1.2, clients, ...) */
    RECORDS_OWN = 1,      /* tls13_records.c, with the traffic secrets OpenSSL negotiated */
};

/* An own-record-layer session's end: nothing more is opened or sealed. */
enum own_end {
    OWN_RUNNING = 0,
    OWN_PEER_CLOSED = 1,  /* close_notify received */
    OWN_FAILED = 2,       /* a record failed, or the peer sent a fatal alert */
    OWN_CLOSED = 3,       /* we sent close_notify */
};

/* Bytes of one direction's buffer kept for the next record once empty: a chat-sized message's
 * record fits, so a busy connection does not allocate per record; larger buffers are freed
 * when they empty (OpenSSL's SSL_MODE_RELEASE_BUFFERS policy), so an idle connection holds at
 * most this much per direction. */
#define OWN_KEPT_BUFFER_BYTES 1024
/* Consecutive empty application-data records accepted (OpenSSL's MAX_EMPTY_RECORDS): a peer
 * sending nothing but empty records would otherwise keep the shard decrypting for nothing. */
#define OWN_MAX_EMPTY_RECORDS 32

typedef struct {
    unsigned char *bytes;
    size_t start, end, capacity;
} byte_buffer;

struct sb_tls_conn {
    SSL *ssl;
    BIO *rbio;  /* ciphertext in: fed by the shard */
    BIO *wbio;  /* ciphertext out: taken by the shard into the send queue */
    int renegotiations;
    /* ---- the own TLS 1.3 record layer (see sb_tls_set_own_records) ---- */
    int own_wanted;     /* switch to it when a TLS 1.3 handshake completes */
    int capture_secrets;
    enum record_layer records;
    /* The application traffic secrets from the keylog callback, held from the handshake
     * until the switch (then wiped). */
    unsigned char client_secret[EVP_MAX_MD_SIZE], server_secret[EVP_MAX_MD_SIZE];
    size_t client_secret_bytes, server_secret_bytes;
    sb_tls13_direction reading, writing;
    byte_buffer in;     /* ciphertext received and not yet opened (at most one partial record left over) */
    byte_buffer out;    /* sealed records not yet taken by the shard */
    byte_buffer cork;   /* plaintext corked since the last sb_tls_uncork (either record layer) */
    int empty_records;
    enum own_end end;
    long key_updates;
    /* What the SSL object answered, kept when it is freed at the take-over (own_take_over). */
    int session_reused;
    int is_server;
    char *alpn;         /* NULL: none negotiated */
    char *server_name;  /* NULL: the client sent none */
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

/* TLS 1.3's application traffic secrets, for the own record layer (and, on a test's client, to
 * forge records). OpenSSL reports every secret it derives as an NSS key-log line, "LABEL
 * <client random, hex> <secret, hex>"; only the two generation-0 application secrets are kept,
 * and only by a connection that asked for them. They never leave the process. */
static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void keylog_cb(const SSL *s, const char *line) {
    sb_tls_conn *c = SSL_get_ex_data(s, g_conn_index);
    if (!c || !c->capture_secrets) return;
    static const char client_label[] = "CLIENT_TRAFFIC_SECRET_0 ";
    static const char server_label[] = "SERVER_TRAFFIC_SECRET_0 ";
    unsigned char *secret;
    size_t *secret_bytes;
    if (strncmp(line, client_label, sizeof client_label - 1) == 0) {
        secret = c->client_secret; secret_bytes = &c->client_secret_bytes;
    } else if (strncmp(line, server_label, sizeof server_label - 1) == 0) {
        secret = c->server_secret; secret_bytes = &c->server_secret_bytes;
    } else {
        return;
    }
    const char *hex = strchr(line + sizeof client_label - 1, ' ');
    if (!hex) return;
    hex++;
    size_t digits = strlen(hex);
    if (digits % 2 != 0 || digits / 2 > EVP_MAX_MD_SIZE) return;
    for (size_t i = 0; i < digits / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) { OPENSSL_cleanse(secret, EVP_MAX_MD_SIZE); *secret_bytes = 0; return; }
        secret[i] = (unsigned char)(hi << 4 | lo);
    }
    *secret_bytes = digits / 2;
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
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
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
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);  /* tests forge records with the client's secret */
    return ctx;
}

sb_tls_conn *sb_tls_conn_new_client(sb_tls_ctx *ctx) {
    sb_tls_conn *c = sb_tls_conn_new(ctx);
    if (c) SSL_set_connect_state(c->ssl);
    return c;
}

/* ---- the own TLS 1.3 record layer: buffers, errors, alerts ---- */

/* Why the last own-record-layer failure on this thread happened, for sb_tls_error (OpenSSL's
 * error queue says nothing about records it did not see). */
static __thread char g_own_error[96];

static void buffer_free(byte_buffer *b) {
    if (b->bytes) OPENSSL_clear_free(b->bytes, b->capacity);
    memset(b, 0, sizeof *b);
}

/* Room for `more` bytes after `end`: moves what is unread to the front, else grows. 0 or -1. */
static int buffer_reserve(byte_buffer *b, size_t more) {
    size_t used = b->end - b->start;
    if (b->bytes && b->capacity - b->end >= more) return 0;
    if (b->bytes && b->capacity - used >= more) {
        memmove(b->bytes, b->bytes + b->start, used);
        b->start = 0;
        b->end = used;
        return 0;
    }
    size_t capacity = used + more;
    if (capacity < 256) capacity = 256;
    unsigned char *grown = OPENSSL_malloc(capacity);
    if (!grown) return -1;
    if (used) memcpy(grown, b->bytes + b->start, used);
    if (b->bytes) OPENSSL_clear_free(b->bytes, b->capacity);
    b->bytes = grown;
    b->capacity = capacity;
    b->start = 0;
    b->end = used;
    return 0;
}

/* An emptied buffer starts over at its front; one larger than OWN_KEPT_BUFFER_BYTES is freed. */
static void buffer_settle(byte_buffer *b) {
    if (b->start != b->end) return;
    if (b->capacity > OWN_KEPT_BUFFER_BYTES) { buffer_free(b); return; }
    b->start = b->end = 0;
}

/* Seals one record into `out`. 0 or -1. */
static int own_seal(sb_tls_conn *c, uint8_t type, const void *bytes, size_t len) {
    if (buffer_reserve(&c->out, sb_tls13_sealed_bytes(len, 0)) != 0) return -1;
    long n = sb_tls13_seal(&c->writing, type, bytes, len, 0, c->out.bytes + c->out.end);
    if (n < 0) return -1;
    c->out.end += (size_t)n;
    return 0;
}

/* Ends the session for a record we refuse: a fatal alert saying why is sealed for the shard to
 * send (as OpenSSL would), the reason kept for sb_tls_error. Returns -2 (sb_tls_read's "failed"). */
static int own_fail(sb_tls_conn *c, unsigned char alert, const char *why) {
    snprintf(g_own_error, sizeof g_own_error, "TLS 1.3 record: %s", why);
    if (c->end == OWN_RUNNING) {
        const unsigned char fatal[2] = {2, alert};
        (void)own_seal(c, SB_TLS13_ALERT, fatal, sizeof fatal);
    }
    c->end = OWN_FAILED;
    return -2;
}

/* The handshake messages of one record (post-handshake: only KeyUpdate is acceptable from a
 * client; this server requests no client certificate). 0, or own_fail's -2. */
static int own_handshake_messages(sb_tls_conn *c, const unsigned char *p, size_t n) {
    if (n == 0) return own_fail(c, 10, "empty handshake record");  /* unexpected_message */
    size_t offset = 0;
    while (offset < n) {
        /* A message split across records is legal TLS but no client splits a 5-byte
         * KeyUpdate; refusing it keeps this parser free of reassembly state. */
        if (n - offset < 4) return own_fail(c, 10, "handshake message split across records");
        unsigned char message_type = p[offset];
        size_t message_bytes = (size_t)p[offset + 1] << 16 | (size_t)p[offset + 2] << 8 | p[offset + 3];
        if (n - offset - 4 < message_bytes) return own_fail(c, 10, "handshake message split across records");
        if (message_type == 4 && !c->is_server) {  /* records are ours: the SSL is gone */
            /* A client's own record layer (the load generator): the server's NewSessionTicket.
             * Not kept: such a client does not resume. */
            offset += 4 + message_bytes;
            continue;
        }
        if (message_type != 24) return own_fail(c, 10, "handshake message other than KeyUpdate after the handshake");
        if (message_bytes != 1) return own_fail(c, 50, "KeyUpdate of the wrong length");  /* decode_error */
        unsigned char request = p[offset + 4];
        if (request > 1) return own_fail(c, 47, "KeyUpdate with an unknown request_update");  /* illegal_parameter */
        /* Section 5.1: handshake messages MUST NOT span key changes, so a KeyUpdate ends its record. */
        if (offset + 5 != n) return own_fail(c, 10, "data after a KeyUpdate in the same record");
        if (sb_tls13_direction_update(&c->reading) != 0) return own_fail(c, 80, "key update failed");
        if (request == 1) {
            /* Section 4.6.3: answer with our own KeyUpdate (not requesting one) before our next
             * application data, then seal with the next generation of keys. */
            static const unsigned char answer[5] = {24, 0, 0, 1, 0};
            if (own_seal(c, SB_TLS13_HANDSHAKE, answer, sizeof answer) != 0 ||
                sb_tls13_direction_update(&c->writing) != 0) return own_fail(c, 80, "key update failed");
        }
        c->key_updates++;
        offset += 5;
    }
    return 0;
}

/* sb_tls_read on the own record layer: the next record's application data (empty records and
 * key updates are consumed on the way). */
static int own_read(sb_tls_conn *c, unsigned char *out, size_t cap) {
    if (c->end == OWN_PEER_CLOSED) return -1;
    if (c->end != OWN_RUNNING) return -2;
    for (;;) {
        size_t available = c->in.end - c->in.start;
        if (available < SB_TLS13_HEADER) { buffer_settle(&c->in); return 0; }
        const unsigned char *header = c->in.bytes + c->in.start;
        size_t body = sb_tls13_body_bytes(header);
        /* The header is checked before waiting for (and buffering) the body. Every record after
         * the handshake is protected, so its outer type is application_data (section 5.2); a
         * change_cipher_spec record is refused after the handshake too (section 5). */
        if (header[0] != SB_TLS13_APPLICATION_DATA) return own_fail(c, 10, "unprotected record after the handshake");
        if (body > SB_TLS13_MAX_CIPHERTEXT) return own_fail(c, 22, "record longer than 2^14 + 256 bytes");  /* record_overflow */
        if (available < SB_TLS13_HEADER + body) return 0;
        if (cap + SB_TLS13_TAG < body) return own_fail(c, 80, "read buffer smaller than a record");
        uint8_t type = 0;
        long n = sb_tls13_open(&c->reading, header, header + SB_TLS13_HEADER, body, out, &type);
        c->in.start += SB_TLS13_HEADER + body;
        if (n == SB_TLS13_RECORD_OVERFLOW) return own_fail(c, 22, "plaintext longer than 2^14 bytes");
        if (n == SB_TLS13_NO_CONTENT_TYPE) return own_fail(c, 10, "record without a content type");
        if (n == SB_TLS13_EXHAUSTED) return own_fail(c, 80, "sequence number exhausted");
        if (n < 0) return own_fail(c, 20, "record did not authenticate");  /* bad_record_mac */
        switch (type) {
        case SB_TLS13_APPLICATION_DATA:
            if (n == 0) {
                if (++c->empty_records > OWN_MAX_EMPTY_RECORDS) return own_fail(c, 10, "too many empty records");
                continue;
            }
            c->empty_records = 0;
            buffer_settle(&c->in);
            return (int)n;
        case SB_TLS13_ALERT:
            /* Section 5.1: an alert record holds exactly one alert. */
            if (n != 2) return own_fail(c, 50, "alert record of the wrong length");
            if (out[1] == 0) { c->end = OWN_PEER_CLOSED; return -1; }  /* close_notify */
            if (out[1] == 90) continue;  /* user_canceled: a close_notify follows (section 6.1) */
            /* Any other alert is fatal (section 6.2): the peer has ended the session; no alert
             * goes back. */
            snprintf(g_own_error, sizeof g_own_error, "TLS 1.3 record: the peer sent fatal alert %u", out[1]);
            c->end = OWN_FAILED;
            return -2;
        case SB_TLS13_HANDSHAKE:
            if (own_handshake_messages(c, out, (size_t)n) != 0) return -2;
            continue;
        default:
            return own_fail(c, 10, "record of an unknown content type");
        }
    }
}

/* After the take-over OpenSSL has nothing left to do for this session: records, alerts, key
 * updates and close_notify are ours. Its SSL object (with both memory BIOs, the handshake's
 * leftovers and the session) is freed, ~17 KB per idle connection (README, TLS), once the
 * few facts still asked of it are kept. */
static void own_release_ssl(sb_tls_conn *c) {
    c->session_reused = SSL_session_reused(c->ssl);
    c->is_server = SSL_is_server(c->ssl);
    const unsigned char *alpn = NULL;
    unsigned int alpn_bytes = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_bytes);
    if (alpn && alpn_bytes) c->alpn = OPENSSL_strndup((const char *)alpn, alpn_bytes);
    const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    if (name) c->server_name = OPENSSL_strdup(name);
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;  /* owned by the SSL (SSL_set_bio) */
}

/* At the end of a TLS 1.3 handshake: takes records over from OpenSSL when it can, and
 * stays with OpenSSL otherwise (TLS 1.2, a CCM suite, secrets not seen, input OpenSSL already
 * buffered). `written_before` is how much ciphertext waited in the write BIO before the
 * SSL_do_handshake call that completed: what that call wrote (TLS 1.3 session tickets, sealed
 * with the server's application key) fixes our first sequence number. */
static void own_take_over(sb_tls_conn *c, size_t written_before) {
    int server = SSL_is_server(c->ssl);
    int ok = SSL_version(c->ssl) == TLS1_3_VERSION &&
             c->client_secret_bytes > 0 && c->server_secret_bytes > 0 && !SSL_has_pending(c->ssl);
    uint64_t sealed = 0;
    /* A client (the load generator's, on request) completes when it writes its Finished, still
     * under the handshake keys: nothing it wrote is sealed with its application key, and the
     * server's tickets come later, through the own record layer. */
    if (ok && server) {
        char *data = NULL;
        long held = BIO_get_mem_data(c->wbio, &data);
        size_t at = written_before;
        while (ok && held >= 0 && at + SB_TLS13_HEADER <= (size_t)held) {
            const unsigned char *h = (const unsigned char *)data + at;
            size_t body = sb_tls13_body_bytes(h);
            if (h[0] != SB_TLS13_APPLICATION_DATA || at + SB_TLS13_HEADER + body > (size_t)held) ok = 0;
            at += SB_TLS13_HEADER + body;
            sealed++;
        }
        if (held < 0 || at != (size_t)held) ok = 0;
    }
    if (ok) {
        uint32_t suite = SSL_CIPHER_get_id(SSL_get_current_cipher(c->ssl));
        const unsigned char *read_secret = server ? c->client_secret : c->server_secret;
        const unsigned char *write_secret = server ? c->server_secret : c->client_secret;
        size_t read_bytes = server ? c->client_secret_bytes : c->server_secret_bytes;
        size_t write_bytes = server ? c->server_secret_bytes : c->client_secret_bytes;
        if (sb_tls13_direction_init(&c->reading, suite, read_secret, read_bytes, 0, 0) != 0) {
            ok = 0;
        } else if (sb_tls13_direction_init(&c->writing, suite, write_secret, write_bytes, sealed, 1) != 0) {
            sb_tls13_direction_free(&c->reading);
            ok = 0;
        }
    }
    if (ok) {
        /* What the client sent after its Finished (its first request, often in the same
         * segment) and the tickets move into our buffers; OpenSSL's are not used again. */
        size_t pending_in = BIO_ctrl_pending(c->rbio), pending_out = BIO_ctrl_pending(c->wbio);
        if (buffer_reserve(&c->in, pending_in ? pending_in : 1) != 0 ||
            buffer_reserve(&c->out, pending_out ? pending_out : 1) != 0) {
            sb_tls13_direction_free(&c->reading);
            sb_tls13_direction_free(&c->writing);
            buffer_free(&c->in);
            buffer_free(&c->out);
            ok = 0;
        } else {
            /* A memory BIO hands over everything it holds. */
            if (pending_in && BIO_read(c->rbio, c->in.bytes, (int)pending_in) == (int)pending_in) c->in.end = pending_in;
            if (pending_out && BIO_read(c->wbio, c->out.bytes, (int)pending_out) == (int)pending_out) c->out.end = pending_out;
            buffer_settle(&c->in);
            buffer_settle(&c->out);
            c->records = RECORDS_OWN;
            own_release_ssl(c);
        }
    }
    OPENSSL_cleanse(c->client_secret, sizeof c->client_secret);
    OPENSSL_cleanse(c->server_secret, sizeof c->server_secret);
    c->client_secret_bytes = c->server_secret_bytes = 0;
    /* Decided once: a session that stayed with OpenSSL does not try again on a later call. */
    c->capture_secrets = 0;
    c->own_wanted = 0;
}

void sb_tls_set_own_records(sb_tls_conn *c, int enabled) {
    c->own_wanted = enabled != 0;
    c->capture_secrets = enabled != 0;
}

int sb_tls_uses_own_records(sb_tls_conn *c) { return c->records == RECORDS_OWN; }

long sb_tls_key_updates(sb_tls_conn *c) { return c->key_updates; }

/* ---- connection I/O: OpenSSL's records or ours ---- */

void sb_tls_conn_free(sb_tls_conn *c) {
    if (!c) return;
    SSL_free(c->ssl);
    if (c->records == RECORDS_OWN) {
        sb_tls13_direction_free(&c->reading);
        sb_tls13_direction_free(&c->writing);
    }
    buffer_free(&c->in);
    buffer_free(&c->out);
    buffer_free(&c->cork);
    OPENSSL_free(c->alpn);
    OPENSSL_free(c->server_name);
    OPENSSL_clear_free(c, sizeof *c);
}

/* Asks for every cache line of `bytes` bytes at `p` (prefetcht0 on x86-64 baseline). */
static inline void prefetch_lines(const void *p, size_t bytes) {
    const char *line = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    const char *end = (const char *)p + bytes;
    for (; line < end; line += 64) __builtin_prefetch(line, 1, 3);
}

/* What a record reads first, asked for one event ahead: at 1,000 TLS connections a
 * connection's state has left the L1 and L2 caches by its next message, and its first touches
 * (the record layer's flag, the keys of both directions ~300 bytes each, the buffers'
 * bookkeeping ~1.2 KB further on) each waited for memory: perf put ~70% of sb_tls_feed's and
 * ~80% of sb_tls_read's samples on those loads (RESULTS.md, 2026-12-05). Nothing here reads
 * `c` (a read would wait for the very line being asked for), so it asks for the own record
 * layer's lines whichever layer the connection uses: on OpenSSL's, a few lines for nothing. The
 * secrets (wiped after the take-over) and the EVP context (long records only) are not asked for. */
void sb_tls_prefetch(const sb_tls_conn *c) {
    prefetch_lines(c, offsetof(sb_tls_conn, records) + sizeof c->records);
    const size_t hot = offsetof(sb_tls13_direction, iv);
    prefetch_lines((const char *)&c->reading + hot, sizeof c->reading - hot);
    prefetch_lines((const char *)&c->writing + hot, sizeof c->writing - hot);
    prefetch_lines(&c->in, offsetof(sb_tls_conn, end) + sizeof c->end - offsetof(sb_tls_conn, in));
}

int sb_tls_feed(sb_tls_conn *c, const void *bytes, size_t len) {
    if (len == 0) return 0;
    if (c->records == RECORDS_OWN) {
        /* Copied (a few dozen bytes for a chat message): the shard's receive buffer is reused
         * as soon as this returns, and a partial record must outlive it. */
        if (buffer_reserve(&c->in, len) != 0) return -1;
        memcpy(c->in.bytes + c->in.end, bytes, len);
        c->in.end += len;
        return (int)len;
    }
    return BIO_write(c->rbio, bytes, (int)len) == (int)len ? (int)len : -1;
}

int sb_tls_handshake(sb_tls_conn *c) {
    if (c->records == RECORDS_OWN) return 1;
    sb_tls_clear_stale_errors();
    size_t written_before = BIO_ctrl_pending(c->wbio);
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        if (c->own_wanted) own_take_over(c, written_before);
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    return -1;
}

int sb_tls_read(sb_tls_conn *c, void *out, size_t cap) {
    if (c->records == RECORDS_OWN) return own_read(c, out, cap);
    return sb_tls_read_mapped(c->ssl, out, cap);
}

/* Whether another sb_tls_read may return something: ciphertext not yet read from the read BIO,
 * or a record (decrypted or not) buffered inside the SSL. When neither, SSL_read would answer
 * "want read": the shard skips that call (one per received batch; with SSL_get_error and the
 * error-queue check it cost about as much as the read that returned data). A partial record
 * already moved into the SSL answers true here and "want read" from SSL_read: a wasted call,
 * never a lost byte. On the own record layer: a whole record waits, or a header a read would
 * refuse. */
int sb_tls_has_input(sb_tls_conn *c) {
    if (c->records == RECORDS_OWN) {
        if (c->end != OWN_RUNNING) return 0;
        size_t available = c->in.end - c->in.start;
        if (available < SB_TLS13_HEADER) return 0;
        const unsigned char *h = c->in.bytes + c->in.start;
        size_t body = sb_tls13_body_bytes(h);
        return h[0] != SB_TLS13_APPLICATION_DATA || body > SB_TLS13_MAX_CIPHERTEXT ||
               available >= SB_TLS13_HEADER + body;
    }
    return BIO_ctrl_pending(c->rbio) > 0 || SSL_has_pending(c->ssl);
}

int sb_tls_write(sb_tls_conn *c, const void *bytes, size_t len) {
    if (c->records == RECORDS_OWN) {
        if (c->end != OWN_RUNNING) return -1;
        /* One record per 2^14 bytes, reserved at once: a cork flush is one allocation at most. */
        size_t records = (len + SB_TLS13_MAX_PLAINTEXT - 1) / SB_TLS13_MAX_PLAINTEXT;
        if (buffer_reserve(&c->out, len + records * (SB_TLS13_HEADER + 1 + SB_TLS13_TAG)) != 0) return -1;
        size_t done = 0;
        while (done < len) {
            size_t n = len - done < SB_TLS13_MAX_PLAINTEXT ? len - done : SB_TLS13_MAX_PLAINTEXT;
            if (own_seal(c, SB_TLS13_APPLICATION_DATA, (const unsigned char *)bytes + done, n) != 0) {
                snprintf(g_own_error, sizeof g_own_error, "TLS 1.3 record: sealing failed");
                c->end = OWN_FAILED;
                return -1;
            }
            done += n;
        }
        return (int)len;
    }
    sb_tls_clear_stale_errors();
    size_t done = 0;
    while (done < len) {
        size_t written = 0;
        if (SSL_write_ex(c->ssl, (const unsigned char *)bytes + done, len - done, &written) != 1) return -1;
        done += written;
    }
    return (int)len;
}

int sb_tls_cork(sb_tls_conn *c, const void *bytes, size_t len) {
    if (len == 0) return 0;
    if (buffer_reserve(&c->cork, len) != 0) return -1;
    memcpy(c->cork.bytes + c->cork.end, bytes, len);
    c->cork.end += len;
    return 0;
}

size_t sb_tls_corked_bytes(const sb_tls_conn *c) { return c->cork.end - c->cork.start; }

int sb_tls_uncork(sb_tls_conn *c, const void *then, size_t then_len) {
    const unsigned char *rest = then;
    size_t n = c->cork.end - c->cork.start;
    if (n > 0 && then_len > 0) {
        /* The message's head tops up the cork's last record (sb_tls_write cuts every
         * SB_TLS13_MAX_PLAINTEXT bytes), so the records are as full as if it had been corked. */
        size_t head = SB_TLS13_MAX_PLAINTEXT - n % SB_TLS13_MAX_PLAINTEXT;
        if (head > then_len) head = then_len;
        if (sb_tls_cork(c, rest, head) != 0) return -1;
        rest += head;
        then_len -= head;
        n += head;
    }
    int ok = 1;
    if (n > 0) {
        ok = sb_tls_write(c, c->cork.bytes + c->cork.start, n) == (int)n;
        /* Emptied whatever happened: after a failed write the session is over. */
        c->cork.start = c->cork.end;
        buffer_settle(&c->cork);
    }
    if (ok && then_len > 0) ok = sb_tls_write(c, rest, then_len) == (int)then_len;
    return ok ? 0 : -1;
}

void sb_tls_drop_corked(sb_tls_conn *c) {
    c->cork.start = c->cork.end;
    buffer_settle(&c->cork);
}

void sb_tls_close_notify(sb_tls_conn *c) {
    if (c->records == RECORDS_OWN) {
        if (c->end == OWN_RUNNING || c->end == OWN_PEER_CLOSED) {
            static const unsigned char notify[2] = {1, 0};  /* warning, close_notify */
            (void)own_seal(c, SB_TLS13_ALERT, notify, sizeof notify);
            c->end = OWN_CLOSED;
        }
        return;
    }
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t sb_tls_pending_out(sb_tls_conn *c) {
    if (c->records == RECORDS_OWN) return c->out.end - c->out.start;
    return BIO_ctrl_pending(c->wbio);
}

int sb_tls_take_out(sb_tls_conn *c, void *out, size_t cap) {
    if (c->records == RECORDS_OWN) {
        size_t n = c->out.end - c->out.start;
        if (n > cap) n = cap;
        if (n) memcpy(out, c->out.bytes + c->out.start, n);
        c->out.start += n;
        buffer_settle(&c->out);
        return (int)n;
    }
    int n = BIO_read(c->wbio, out, (int)cap);
    return n > 0 ? n : 0;
}

int sb_tls_renegotiation_attempts(sb_tls_conn *c) { return c->renegotiations; }
int sb_tls_session_reused(sb_tls_conn *c) { return c->ssl ? SSL_session_reused(c->ssl) : c->session_reused; }
/* Without an SSL object the session is on the own record layer: TLS 1.3 only. */
const char *sb_tls_version(sb_tls_conn *c) { return c->ssl ? SSL_get_version(c->ssl) : "TLSv1.3"; }

int sb_tls_alpn(sb_tls_conn *c, char *out, size_t cap) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    if (c->ssl) SSL_get0_alpn_selected(c->ssl, &p, &n);
    else if (c->alpn) { p = (const unsigned char *)c->alpn; n = (unsigned int)strlen(c->alpn); }
    if (!p || n == 0 || n + 1 > cap) { if (cap) out[0] = 0; return 0; }
    memcpy(out, p, n);
    out[n] = 0;
    return (int)n;
}

int sb_tls_server_name(sb_tls_conn *c, char *out, size_t cap) {
    const char *name = c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : c->server_name;
    if (!name || cap == 0) { if (cap) out[0] = 0; return 0; }
    size_t n = strlen(name);
    if (n + 1 > cap) n = cap - 1;
    memcpy(out, name, n);
    out[n] = 0;
    return (int)n;
}

void sb_tls_error(char *out, size_t cap) {
    if (cap == 0) return;
    if (g_own_error[0]) {
        snprintf(out, cap, "%s", g_own_error);
        g_own_error[0] = 0;
        ERR_clear_error();
        return;
    }
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, out, cap); else snprintf(out, cap, "unknown TLS error");
    ERR_clear_error();
}

/* ---- test support ---- */

void sb_tls_test_client_accepts_tickets(sb_tls_ctx *ctx) { SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET); }

/* The hooks below act on OpenSSL's SSL object: on a session whose records are ours it is gone
 * (own_release_ssl), and they answer -1 / 0 instead. */
int sb_tls_test_client_has_ticket(sb_tls_conn *c) {
    if (!c->ssl) return 0;
    SSL_SESSION *session = SSL_get0_session(c->ssl);
    return session != NULL && SSL_SESSION_has_ticket(session);
}

void sb_tls_test_client_max_tls12(sb_tls_ctx *ctx) { SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION); }

void sb_tls_test_capture_secrets(sb_tls_conn *c) { c->capture_secrets = 1; }

long sb_tls_test_seal_client_record(sb_tls_conn *c, uint64_t sequence, uint8_t type, const void *bytes,
                                    size_t len, size_t padding, void *out, size_t cap) {
    if (!c->ssl || c->client_secret_bytes == 0 || cap < sb_tls13_sealed_bytes(len, padding)) return -1;
    sb_tls13_direction d;
    uint32_t suite = SSL_CIPHER_get_id(SSL_get_current_cipher(c->ssl));
    if (sb_tls13_direction_init(&d, suite, c->client_secret, c->client_secret_bytes, sequence, 1) != 0) return -1;
    long n = sb_tls13_seal(&d, type, bytes, len, padding, out);
    sb_tls13_direction_free(&d);
    return n;
}

int sb_tls_test_key_update(sb_tls_conn *c, int request) {
    if (!c->ssl) return -1;
    ERR_clear_error();
    if (SSL_key_update(c->ssl, request ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) != 1) return -1;
    /* The KeyUpdate goes out with the next write or handshake step. */
    return SSL_do_handshake(c->ssl) == 1 ? 0 : -1;
}

int sb_tls_test_block_padding(sb_tls_conn *c, size_t block) {
    if (!c->ssl) return -1;
    return SSL_set_block_padding(c->ssl, block) == 1 ? 0 : -1;
}

int sb_tls_test_expand_label_sha256(const uint8_t *secret, size_t secret_len, const char *label,
                                    uint8_t *out, size_t out_len) {
    return sb_tls13_expand_label(EVP_sha256(), secret, secret_len, label, out, out_len);
}

void sb_tls_test_force_evp(int force) { sb_tls13_force_evp(force); }

int sb_tls_gcm_small_available(void) { return sb_gcm_small_available(); }

/* EVP AES-GCM, one shot, as the reference. 0 or -1. */
static int evp_gcm(int encrypt, size_t key_bytes, const unsigned char *key, const unsigned char *nonce,
                   const unsigned char *aad, size_t aad_len, const unsigned char *in, size_t len,
                   unsigned char *out, unsigned char *tag) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok = ctx != NULL &&
        EVP_CipherInit_ex(ctx, key_bytes == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), NULL, key, nonce, encrypt) == 1 &&
        (aad_len == 0 || EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) &&
        (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1) &&
        (encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1) &&
        EVP_CipherFinal_ex(ctx, out + (len ? n : 0), &n) == 1 &&
        (!encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int sb_tls_test_gcm_small_matches_evp(size_t key_bytes, size_t max_len) {
    if (!sb_gcm_small_available()) return -1;
    int mismatches = 0;
    /* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 1 and 2 (AES-128,
     * zero key and IV): an empty message, then one zero block. */
    {
        static const unsigned char zero[16] = {0};
        static const unsigned char tag1[16] = {0x58, 0xe2, 0xfc, 0xce, 0xfa, 0x7e, 0x30, 0x61, 0x36, 0x7f, 0x1d, 0x57, 0xa4, 0xe7, 0x45, 0x5a};
        static const unsigned char c2[16] = {0x03, 0x88, 0xda, 0xce, 0x60, 0xb6, 0xa3, 0x92, 0xf3, 0x28, 0xc2, 0xb9, 0x71, 0xb2, 0xfe, 0x78};
        static const unsigned char tag2[16] = {0xab, 0x6e, 0x47, 0xd4, 0x2c, 0xec, 0x13, 0xbd, 0xf5, 0x3a, 0x67, 0xb2, 0x12, 0x57, 0xbd, 0xdf};
        sb_gcm_key k;
        unsigned char out[16], tag[16];
        if (sb_gcm_small_init(&k, zero, 16) != 0) return -1;
        if (sb_gcm_small_seal(&k, zero, NULL, 0, NULL, out, 0, tag) != 0 || memcmp(tag, tag1, 16) != 0) mismatches++;
        if (sb_gcm_small_seal(&k, zero, NULL, 0, zero, out, 16, tag) != 0 || memcmp(out, c2, 16) != 0 ||
            memcmp(tag, tag2, 16) != 0) mismatches++;
        /* Longer than its keystream buffer: refused, not overrun. */
        static unsigned char big[SB_GCM_SMALL_MAX_BYTES + 1];
        if (sb_gcm_small_seal(&k, zero, NULL, 0, big, big, sizeof big, tag) != -1) mismatches++;
        if (sb_gcm_small_open(&k, zero, NULL, 0, big, big, sizeof big, tag) != -1) mismatches++;
    }
    uint64_t state = 0x9e3779b97f4a7c15ULL ^ key_bytes;
    unsigned char key[32], nonce[12], aad[20], data[2048], mine[2048], theirs[2048], back[2048], tag_mine[16], tag_theirs[16];
    if (max_len > SB_GCM_SMALL_MAX_BYTES) max_len = SB_GCM_SMALL_MAX_BYTES;
    for (size_t len = 0; len <= max_len; len++) {
        unsigned char *fill[] = {key, nonce, aad, data};
        size_t sizes[] = {sizeof key, sizeof nonce, sizeof aad, len};
        for (int f = 0; f < 4; f++) for (size_t i = 0; i < sizes[f]; i++) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            fill[f][i] = (unsigned char)state;
        }
        size_t aad_len = len % 21;
        sb_gcm_key k;
        if (sb_gcm_small_init(&k, key, key_bytes) != 0) return -1;
        /* A canary after each output: a partial block is written without touching the next byte. */
        mine[len] = 0xa5;
        if (sb_gcm_small_seal(&k, nonce, aad, aad_len, data, mine, len, tag_mine) != 0) { mismatches++; continue; }
        if (mine[len] != 0xa5) mismatches++;
        if (evp_gcm(1, key_bytes, key, nonce, aad, aad_len, data, len, theirs, tag_theirs) != 0) { mismatches++; continue; }
        if (memcmp(mine, theirs, len) != 0 || memcmp(tag_mine, tag_theirs, 16) != 0) { mismatches++; continue; }
        /* Each opens the other's record; in place too. */
        back[len] = 0x5a;
        if (sb_gcm_small_open(&k, nonce, aad, aad_len, theirs, back, len, tag_theirs) != 0 || memcmp(back, data, len) != 0) mismatches++;
        if (back[len] != 0x5a) mismatches++;
        if (evp_gcm(0, key_bytes, key, nonce, aad, aad_len, mine, len, back, tag_mine) != 0 || memcmp(back, data, len) != 0) mismatches++;
        memcpy(back, mine, len);
        if (sb_gcm_small_open(&k, nonce, aad, aad_len, back, back, len, tag_mine) != 0 || memcmp(back, data, len) != 0) mismatches++;
        /* Tampering is refused: the tag, the ciphertext, the additional data. */
        tag_mine[len % 16] ^= 1;
        if (sb_gcm_small_open(&k, nonce, aad, aad_len, mine, back, len, tag_mine) == 0) mismatches++;
        tag_mine[len % 16] ^= 1;
        if (len > 0) {
            mine[len / 2] ^= 0x80;
            if (sb_gcm_small_open(&k, nonce, aad, aad_len, mine, back, len, tag_mine) == 0) mismatches++;
            mine[len / 2] ^= 0x80;
        }
        if (aad_len > 0) {
            aad[0] ^= 4;
            if (sb_gcm_small_open(&k, nonce, aad, aad_len, mine, back, len, tag_mine) == 0) mismatches++;
        }
        sb_gcm_small_clear(&k);
    }
    return mismatches;
}
