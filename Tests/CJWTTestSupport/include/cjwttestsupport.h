#ifndef SWITCHBOARD_CJWT_TEST_SUPPORT_H
#define SWITCHBOARD_CJWT_TEST_SUPPORT_H
#include <stddef.h>
#include <stdint.h>

// Test-only: key generation and signing, so that no private key is ever committed and the
// production target (COpenSSL) carries verification only.

void *sbt_generate_rsa(unsigned int bits);
void *sbt_generate_ec(const char *curve);
void sbt_key_free(void *key);
/// The public half as SubjectPublicKeyInfo PEM into `out`; returns its length or -1.
int sbt_public_pem(void *key, char *out, size_t cap);
/// SHA-256 signature: PKCS#1 v1.5 for RSA (returns its length), JWS R||S (64 bytes) for P-256.
int sbt_sign_sha256(void *key, const uint8_t *data, size_t len, uint8_t *out, size_t cap);
/// HMAC with the named digest ("SHA256", "SHA384"); returns the MAC length or -1.
int sbt_hmac(const char *digest, const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t *out);
#endif
