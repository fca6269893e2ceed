#ifndef SWITCHBOARD_COPENSSL_GCM_SMALL_H
#define SWITCHBOARD_COPENSSL_GCM_SMALL_H
/* Private to COpenSSL. AES-GCM (NIST SP 800-38D) for short TLS records with AES-NI and
 * PCLMULQDQ, without OpenSSL's EVP layer.
 *
 * Why: in OpenSSL 3.0 an AEAD call through EVP costs ~400 ns before any byte is encrypted:
 * setting the nonce asks the provider for the IV length and reading or setting the tag goes
 * through OSSL_PARAM lookups (a strcmp per known parameter), and a chat message's record is
 * 30-100 bytes. This computes the same function directly: AES rounds with AESENC, GHASH with
 * carry-less multiplication (Intel's reflected-bit method), ~100 ns for such a record. Both
 * instructions run in constant time (no table lookups), and the tag is compared with
 * CRYPTO_memcmp. AES runs four blocks at a time and GHASH reduces once per four blocks, but
 * the two are separate passes (not stitched as OpenSSL's assembly is), so it is slower than
 * OpenSSL per byte: tls13_records.c uses it for records up to SB_GCM_SMALL_MAX_BYTES and EVP
 * above. Both produce identical records (a test compares them
 * on every length up to 512 bytes, for both key sizes).
 *
 * Thread rules: a key is immutable once expanded; calls keep no state between them.
 */
#include <stddef.h>
#include <stdint.h>

/* Records whose inner plaintext is at most this long use this code, longer ones EVP. */
#define SB_GCM_SMALL_MAX_BYTES 512

typedef struct {
    /* AES round keys (11 for AES-128, 15 for AES-256) and the hash key H = E(K, 0^128),
     * byte-reversed for the reflected GHASH, with its powers H^2, H^3, H^4 for hashing four
     * blocks with one reduction. 16-byte aligned for aligned loads. */
    _Alignas(16) unsigned char round_keys[15][16];
    _Alignas(16) unsigned char hash_key[16];
    _Alignas(16) unsigned char hash_key_powers[3][16];  /* H^2, H^3, H^4 */
    int rounds;  /* 10 or 14 */
} sb_gcm_key;

/* Whether this CPU has AES-NI, PCLMULQDQ and SSE4.1 (checked once). */
int sb_gcm_small_available(void);
/* Expands a 16- or 32-byte key. 0, or -1 (other length, or the CPU lacks the instructions). */
int sb_gcm_small_init(sb_gcm_key *k, const unsigned char *key, size_t key_bytes);
/* Encrypts `len` bytes (at most SB_GCM_SMALL_MAX_BYTES; in == out allowed) and writes the
 * 16-byte tag. 0, or -1 when `len` is over the maximum. */
int sb_gcm_small_seal(const sb_gcm_key *k, const unsigned char nonce[12], const unsigned char *aad, size_t aad_len,
                       const unsigned char *in, unsigned char *out, size_t len, unsigned char tag[16]);
/* Decrypts `len` bytes (at most SB_GCM_SMALL_MAX_BYTES) into `out` (in == out allowed) and
 * checks `tag`: 0, or -1 when it does not authenticate or is over the maximum (then `out` holds garbage the caller must not use). */
int sb_gcm_small_open(const sb_gcm_key *k, const unsigned char nonce[12], const unsigned char *aad, size_t aad_len,
                      const unsigned char *in, unsigned char *out, size_t len, const unsigned char tag[16]);
/* Wipes the key. */
void sb_gcm_small_clear(sb_gcm_key *k);
#endif
