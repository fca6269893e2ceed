#ifndef SWITCHBOARD_COPENSSL_JWT_H
#define SWITCHBOARD_COPENSSL_JWT_H
#include <stddef.h>
#include <stdint.h>

// JWT signature verification (SwitchboardJWT). Kept in its own header so that the JWT shims
// and the WebSocket shims (copenssl.h) change independently.

/// Compares `len` bytes in time independent of their contents (CRYPTO_memcmp). 0 when equal.
int sb_memcmp_consttime(const void *a, const void *b, size_t len);

/// HMAC-SHA-256 of `data` under `key` into `out` (32 bytes). Returns 0 or -1.
int sb_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len, uint8_t out[32]);

/// SHA-256 of `data` into `out` (32 bytes). Returns 0 or -1.
int sb_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

/// Kinds of public key `sb_public_key_from_pem` recognizes.
enum {
    SB_KEY_OTHER = 0,  ///< any key type JWT verification here does not accept
    SB_KEY_RSA = 1,
    SB_KEY_EC_P256 = 2,
};

/// Reads one SubjectPublicKeyInfo PEM block ("BEGIN PUBLIC KEY"). Returns an owned EVP_PKEY
/// (free with sb_public_key_free) and sets `kind` and `bits`, or NULL when the text is not one.
void *sb_public_key_from_pem(const char *pem, size_t len, int *kind, int *bits);
void sb_public_key_free(void *key);

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256). 1 valid, 0 invalid, -1 error.
int sb_verify_rs256(void *key, const uint8_t *data, size_t data_len, const uint8_t *sig, size_t sig_len);

/// ECDSA P-256 with SHA-256 (JWS ES256); `sig` is the JWS form R || S, 64 bytes, converted to
/// DER for OpenSSL here. 1 valid, 0 invalid, -1 error.
int sb_verify_es256(void *key, const uint8_t *data, size_t data_len, const uint8_t sig[64]);
#endif
