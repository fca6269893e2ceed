#include "tls13_records.h"
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <string.h>

int sb_tls13_expand_label(const EVP_MD *hash, const unsigned char *secret, size_t secret_len,
                          const char *label, unsigned char *out, size_t out_len) {
    /* HkdfLabel = uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>
     * (empty here), then HKDF-Expand's counter byte 0x01: every length we expand is at most
     * the hash's size, so T(1) = HMAC(secret, HkdfLabel || 0x01) is the whole output. */
    static const char prefix[] = "tls13 ";
    size_t label_len = strlen(label);
    size_t hash_bytes = (size_t)EVP_MD_get_size(hash);
    if (out_len == 0 || out_len > hash_bytes || label_len > 32) return -1;
    unsigned char info[2 + 1 + 6 + 32 + 1 + 1];
    size_t n = 0;
    info[n++] = (unsigned char)(out_len >> 8);
    info[n++] = (unsigned char)out_len;
    info[n++] = (unsigned char)(sizeof prefix - 1 + label_len);
    memcpy(info + n, prefix, sizeof prefix - 1);
    n += sizeof prefix - 1;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0;  /* context: empty */
    info[n++] = 1;  /* HKDF-Expand's counter */
    unsigned char t[EVP_MAX_MD_SIZE];
    size_t t_len = 0;
    if (EVP_Q_mac(NULL, "HMAC", NULL, EVP_MD_get0_name(hash), NULL, secret, secret_len, info, n,
                  t, sizeof t, &t_len) == NULL || t_len != hash_bytes) {
        OPENSSL_cleanse(t, sizeof t);
        return -1;
    }
    memcpy(out, t, out_len);
    OPENSSL_cleanse(t, sizeof t);
    return 0;
}

/* Tests only; read by every shard thread, so an atomic (relaxed: it only picks between two
 * paths that compute the same records). */
static int g_force_evp;

void sb_tls13_force_evp(int force) { __atomic_store_n(&g_force_evp, force, __ATOMIC_RELAXED); }

static inline int force_evp(void) { return __atomic_load_n(&g_force_evp, __ATOMIC_RELAXED); }

/* The AEAD context, made and keyed with the current key if it is not yet. 0 or -1. */
static int aead_ready(sb_tls13_direction *d) {
    if (d->aead_keyed) return 0;
    if (d->aead == NULL && (d->aead = EVP_CIPHER_CTX_new()) == NULL) return -1;
    if (EVP_CipherInit_ex(d->aead, d->cipher, NULL, d->key, NULL, d->encrypt) != 1) return -1;
    d->aead_keyed = 1;
    return 0;
}

/* Key and IV from the current secret (section 7.3), for the short-record path (AES-GCM: both
 * compute the same function) and for the AEAD context, which is keyed now only when every
 * record needs it (ChaCha20-Poly1305, or a CPU without AES-NI), else when a long record comes. */
static int rekey(sb_tls13_direction *d) {
    int ok = d->key_bytes <= sizeof d->key &&
             sb_tls13_expand_label(d->hash, d->secret, d->hash_bytes, "key", d->key, d->key_bytes) == 0 &&
             sb_tls13_expand_label(d->hash, d->secret, d->hash_bytes, "iv", d->iv, sizeof d->iv) == 0;
    d->aead_keyed = 0;
    d->small_records = ok && EVP_CIPHER_get_mode(d->cipher) == EVP_CIPH_GCM_MODE &&
                       sb_gcm_small_init(&d->small, d->key, d->key_bytes) == 0;
    if (ok && !d->small_records) ok = aead_ready(d) == 0;
    return ok ? 0 : -1;
}

int sb_tls13_direction_init(sb_tls13_direction *d, uint32_t suite_id, const unsigned char *secret,
                            size_t secret_bytes, uint64_t sequence, int encrypt) {
    memset(d, 0, sizeof *d);
    switch (suite_id) {
    case 0x03001301: d->cipher = EVP_aes_128_gcm(); d->hash = EVP_sha256(); d->key_bytes = 16; break;
    case 0x03001302: d->cipher = EVP_aes_256_gcm(); d->hash = EVP_sha384(); d->key_bytes = 32; break;
    case 0x03001303: d->cipher = EVP_chacha20_poly1305(); d->hash = EVP_sha256(); d->key_bytes = 32; break;
    default: return -1;  /* CCM suites are not offered by default; OpenSSL keeps those sessions */
    }
    if (d->cipher == NULL || d->hash == NULL) return -1;
    d->hash_bytes = (size_t)EVP_MD_get_size(d->hash);
    if (secret_bytes != d->hash_bytes || secret_bytes > sizeof d->secret) return -1;
    memcpy(d->secret, secret, secret_bytes);
    d->sequence = sequence;
    d->encrypt = encrypt;
    if (rekey(d) != 0) {
        sb_tls13_direction_free(d);
        return -1;
    }
    return 0;
}

int sb_tls13_direction_update(sb_tls13_direction *d) {
    unsigned char next[EVP_MAX_MD_SIZE];
    if (sb_tls13_expand_label(d->hash, d->secret, d->hash_bytes, "traffic upd", next, d->hash_bytes) != 0) return -1;
    memcpy(d->secret, next, d->hash_bytes);
    OPENSSL_cleanse(next, sizeof next);
    d->sequence = 0;
    return rekey(d);
}

void sb_tls13_direction_free(sb_tls13_direction *d) {
    EVP_CIPHER_CTX_free(d->aead);  /* wipes the key schedule (NULL: never made) */
    OPENSSL_cleanse(d, sizeof *d);   /* the secret, the key, the IV and gcm_small's round keys with it */
}

/* The per-record nonce: the IV XORed with the sequence number, big-endian in its last 8
 * bytes (section 5.3). */
static inline void make_nonce(const sb_tls13_direction *d, unsigned char nonce[12]) {
    memcpy(nonce, d->iv, 12);
    uint64_t s = d->sequence;
    for (int i = 11; i >= 4; i--) {
        nonce[i] ^= (unsigned char)s;
        s >>= 8;
    }
}

long sb_tls13_seal(sb_tls13_direction *d, uint8_t type, const void *in, size_t len, size_t padding,
                   unsigned char *out) {
    /* The wire's bound, not 2^14: sb_tls_write cuts at 2^14, and a test forges the longer
     * records a hostile peer could send. */
    if (!d->encrypt || len + 1 + padding + SB_TLS13_TAG > SB_TLS13_MAX_CIPHERTEXT) return -1;
    /* A sequence number must not wrap (section 5.3); 2^64 records is out of reach, but the
     * check is one compare. */
    if (d->sequence == UINT64_MAX) return -1;
    size_t inner = len + 1 + padding;
    size_t body = inner + SB_TLS13_TAG;
    /* The header is the additional data: opaque_type 23, legacy_record_version 0x0303, length. */
    out[0] = SB_TLS13_APPLICATION_DATA;
    out[1] = 3;
    out[2] = 3;
    out[3] = (unsigned char)(body >> 8);
    out[4] = (unsigned char)body;
    unsigned char *p = out + SB_TLS13_HEADER;
    /* The content type and padding are written in place behind the content's ciphertext and
     * encrypted in place (EVP allows in == out exactly): the content is not copied first. */
    p[len] = type;
    if (padding) memset(p + len + 1, 0, padding);
    unsigned char nonce[12];
    make_nonce(d, nonce);
    if (d->small_records && inner <= SB_GCM_SMALL_MAX_BYTES && !force_evp()) {
        if (len) memcpy(p, in, len);
        if (sb_gcm_small_seal(&d->small, nonce, out, SB_TLS13_HEADER, p, p, inner, p + inner) != 0) return -1;
        d->sequence++;
        return (long)(SB_TLS13_HEADER + body);
    }
    int n = 0, tail = 0, fin = 0;
    if (aead_ready(d) != 0) return -1;
    if (EVP_CipherInit_ex(d->aead, NULL, NULL, NULL, nonce, 1) != 1) return -1;
    if (EVP_EncryptUpdate(d->aead, NULL, &n, out, SB_TLS13_HEADER) != 1) return -1;
    n = 0;
    if (len > 0 && EVP_EncryptUpdate(d->aead, p, &n, in, (int)len) != 1) return -1;
    if (EVP_EncryptUpdate(d->aead, p + n, &tail, p + len, (int)(inner - len)) != 1) return -1;
    if (EVP_EncryptFinal_ex(d->aead, p + n + tail, &fin) != 1) return -1;
    if ((size_t)(n + tail + fin) != inner) return -1;  /* AEAD modes are stream modes */
    if (EVP_CIPHER_CTX_ctrl(d->aead, EVP_CTRL_AEAD_GET_TAG, SB_TLS13_TAG, p + inner) != 1) return -1;
    d->sequence++;
    return (long)(SB_TLS13_HEADER + body);
}

/* TLSInnerPlaintext: content, the content type (non-zero), then zeros. */
static long strip_padding(const unsigned char *out, size_t inner, uint8_t *type) {
    size_t i = inner;
    while (i > 0 && out[i - 1] == 0) i--;
    if (i == 0) return SB_TLS13_NO_CONTENT_TYPE;
    *type = out[i - 1];
    size_t content = i - 1;
    if (content > SB_TLS13_MAX_PLAINTEXT) return SB_TLS13_RECORD_OVERFLOW;
    return (long)content;
}

long sb_tls13_open(sb_tls13_direction *d, const unsigned char *header, const unsigned char *body,
                   size_t body_len, unsigned char *out, uint8_t *type) {
    if (d->encrypt) return SB_TLS13_BAD_RECORD_MAC;
    if (body_len < SB_TLS13_TAG || body_len > SB_TLS13_MAX_CIPHERTEXT) return SB_TLS13_BAD_RECORD_MAC;
    if (d->sequence == UINT64_MAX) return SB_TLS13_EXHAUSTED;
    size_t inner = body_len - SB_TLS13_TAG;
    unsigned char nonce[12];
    make_nonce(d, nonce);
    if (d->small_records && inner <= SB_GCM_SMALL_MAX_BYTES && !force_evp()) {
        if (sb_gcm_small_open(&d->small, nonce, header, SB_TLS13_HEADER, body, out, inner, body + inner) != 0) {
            return SB_TLS13_BAD_RECORD_MAC;
        }
        d->sequence++;
        return strip_padding(out, inner, type);
    }
    int n = 0, fin = 0;
    if (aead_ready(d) != 0) return SB_TLS13_BAD_RECORD_MAC;
    if (EVP_CipherInit_ex(d->aead, NULL, NULL, NULL, nonce, 0) != 1) return SB_TLS13_BAD_RECORD_MAC;
    if (EVP_DecryptUpdate(d->aead, NULL, &n, header, SB_TLS13_HEADER) != 1) return SB_TLS13_BAD_RECORD_MAC;
    n = 0;
    if (inner > 0 && EVP_DecryptUpdate(d->aead, out, &n, body, (int)inner) != 1) return SB_TLS13_BAD_RECORD_MAC;
    if (EVP_CIPHER_CTX_ctrl(d->aead, EVP_CTRL_AEAD_SET_TAG, SB_TLS13_TAG, (void *)(body + inner)) != 1) return SB_TLS13_BAD_RECORD_MAC;
    /* Final checks the tag; nothing decrypted is used before it says yes. */
    if (EVP_DecryptFinal_ex(d->aead, out + n, &fin) != 1) return SB_TLS13_BAD_RECORD_MAC;
    if ((size_t)(n + fin) != inner) return SB_TLS13_BAD_RECORD_MAC;
    d->sequence++;
    return strip_padding(out, inner, type);
}
