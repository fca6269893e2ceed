#ifndef SWITCHBOARD_COPENSSL_TLS13_RECORDS_H
#define SWITCHBOARD_COPENSSL_TLS13_RECORDS_H
/* Private to COpenSSL (outside include/: not part of the module Swift imports).
 *
 * TLS 1.3 application-data records (RFC 8446 section 5), one direction at a time: what
 * OpenSSL's record layer does once the handshake is over, without its per-record overhead
 * (in OpenSSL 3.0 an SSL_write of 34 bytes costs ~1.2 µs of user time; most of it is the
 * record layer's generality: provider parameter lookups, buffer management, the state
 * machine). OpenSSL still does everything else: the handshake, certificates, tickets, and the
 * AEAD itself (EVP, so AES-NI / the provider's assembly, constant time).
 *
 * A direction holds a traffic secret, the key and IV derived from it (section 7.3) and the
 * record sequence number. seal() makes one record; open() checks and decrypts one. Neither
 * does I/O or buffering: tls.c keeps the bytes. Thread rules: a direction belongs to one
 * connection, so to one shard thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "gcm_small.h"

/* Largest TLSInnerPlaintext content (2^14), and the largest ciphertext body a peer may send
 * (2^14 + 256, section 5.2: content, type byte, padding and the AEAD expansion). */
#define SB_TLS13_MAX_PLAINTEXT 16384
#define SB_TLS13_MAX_CIPHERTEXT (16384 + 256)
#define SB_TLS13_HEADER 5
#define SB_TLS13_TAG 16

/* Content types (section 5.1). */
#define SB_TLS13_ALERT 21
#define SB_TLS13_HANDSHAKE 22
#define SB_TLS13_APPLICATION_DATA 23

typedef struct {
    /* OpenSSL's AEAD context, for records longer than gcm_small takes and for suites it does
     * not do (ChaCha20-Poly1305). Made and keyed when first needed (`key` holds the key until
     * then): a chat connection whose records are all short never makes one, ~1.4 KB each. */
    EVP_CIPHER_CTX *aead;
    int aead_keyed;              /* `aead` holds the current key */
    unsigned char key[32];       /* the current key (its round keys are in `small` anyway) */
    const EVP_MD *hash;          /* the suite's hash: HKDF for keys and key updates */
    const EVP_CIPHER *cipher;
    size_t key_bytes;
    size_t hash_bytes;
    unsigned char secret[EVP_MAX_MD_SIZE]; /* the current application traffic secret */
    unsigned char iv[12];
    uint64_t sequence;           /* of the next record in this direction */
    int encrypt;                 /* 1 seal, 0 open */
    /* AES-GCM suites on a CPU with AES-NI and PCLMULQDQ: short records skip EVP (gcm_small.h). */
    int small_records;
    sb_gcm_key small;
} sb_tls13_direction;

/* Tests: 1 makes every record go through EVP (to compare both paths). Process-wide. */
void sb_tls13_force_evp(int force);

/* Sets `d` up from a traffic secret for the suite `suite_id` (SSL_CIPHER_get_id: 0x03001301
 * AES-128-GCM-SHA256, 0x03001302 AES-256-GCM-SHA384, 0x03001303 CHACHA20-POLY1305-SHA256),
 * with its first record's sequence number. 0, or -1 (unknown suite, bad secret length, no
 * memory): then `d` holds nothing to free. */
int sb_tls13_direction_init(sb_tls13_direction *d, uint32_t suite_id, const unsigned char *secret,
                            size_t secret_bytes, uint64_t sequence, int encrypt);
/* The next generation of keys (KeyUpdate, section 7.2): secret_N+1 = HKDF-Expand-Label(
 * secret_N, "traffic upd", "", Hash.length); the sequence number starts again at 0. 0 or -1. */
int sb_tls13_direction_update(sb_tls13_direction *d);
/* Frees the AEAD context and wipes the secret and IV. Safe on a zeroed direction. */
void sb_tls13_direction_free(sb_tls13_direction *d);

/* The body length a record header (5 bytes) announces. */
static inline size_t sb_tls13_body_bytes(const unsigned char *header) {
    return (size_t)header[3] << 8 | header[4];
}

/* Bytes a record carrying `len` content bytes and `padding` zero bytes takes on the wire. */
static inline size_t sb_tls13_sealed_bytes(size_t len, size_t padding) {
    return SB_TLS13_HEADER + len + 1 + padding + SB_TLS13_TAG;
}

/* Writes one record of content type `type` carrying `len` bytes at `in` (`padding` zeros after
 * the type byte; at most SB_TLS13_MAX_CIPHERTEXT bytes of body in all: callers cut at
 * SB_TLS13_MAX_PLAINTEXT, tests forge longer ones) into `out`, which has room for
 * sb_tls13_sealed_bytes(len, padding). `in` may not overlap `out`. Returns the record's size,
 * or -1 (the AEAD failed, or the sequence number is exhausted: the connection must end). */
long sb_tls13_seal(sb_tls13_direction *d, uint8_t type, const void *in, size_t len, size_t padding,
                   unsigned char *out);

/* Outcomes of sb_tls13_open besides a content length (>= 0). */
#define SB_TLS13_BAD_RECORD_MAC (-20)   /* did not authenticate (or too short to) */
#define SB_TLS13_RECORD_OVERFLOW (-22)  /* plaintext over 2^14 */
#define SB_TLS13_NO_CONTENT_TYPE (-10)  /* all zeros: no content type (unexpected_message) */
#define SB_TLS13_EXHAUSTED (-80)        /* the sequence number would wrap (internal_error) */

/* Opens the record whose 5-byte header is `header` and whose body (ciphertext and tag,
 * `body_len` bytes, at most SB_TLS13_MAX_CIPHERTEXT) is `body`, into `out` (room for
 * body_len - 16 bytes). Returns the content length and its type in `*type` (padding removed),
 * or one of the negative outcomes above; on failure `out` holds garbage. */
long sb_tls13_open(sb_tls13_direction *d, const unsigned char *header, const unsigned char *body,
                   size_t body_len, unsigned char *out, uint8_t *type);

/* HKDF-Expand-Label(secret, label, "", out_len) with `hash` (section 7.1), out_len at most
 * the hash's size. 0 or -1. Exposed for the known-answer test. */
int sb_tls13_expand_label(const EVP_MD *hash, const unsigned char *secret, size_t secret_len,
                          const char *label, unsigned char *out, size_t out_len);
#endif
