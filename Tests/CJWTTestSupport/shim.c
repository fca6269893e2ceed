#include "cjwttestsupport.h"
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

void *sbt_generate_rsa(unsigned int bits) { return EVP_RSA_gen(bits); }
void *sbt_generate_ec(const char *curve) { return EVP_EC_gen(curve); }
void sbt_key_free(void *key) { EVP_PKEY_free((EVP_PKEY *)key); }

int sbt_public_pem(void *key, char *out, size_t cap) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return -1;
    int result = -1;
    if (PEM_write_bio_PUBKEY(bio, (EVP_PKEY *)key) == 1) {
        char *data = NULL;
        long len = BIO_get_mem_data(bio, &data);
        if (len > 0 && (size_t)len <= cap) {
            memcpy(out, data, (size_t)len);
            result = (int)len;
        }
    }
    BIO_free(bio);
    return result;
}

int sbt_sign_sha256(void *key, const uint8_t *data, size_t len, uint8_t *out, size_t cap) {
    EVP_PKEY *pkey = (EVP_PKEY *)key;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    unsigned char der[1024];
    size_t der_len = sizeof der;
    int ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1
        && EVP_DigestSign(ctx, der, &der_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) return -1;
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) {
        if (der_len > cap) return -1;
        memcpy(out, der, der_len);
        return (int)der_len;
    }
    if (cap < 64) return -1;
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL) return -1;
    ok = BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 64 : -1;
}

int sbt_hmac(const char *digest, const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t *out) {
    const EVP_MD *md = EVP_get_digestbyname(digest);
    unsigned int out_len = 0;
    if (md == NULL || HMAC(md, key, (int)key_len, data, len, out, &out_len) == NULL) return -1;
    return (int)out_len;
}
