#include "copenssl_jwt.h"
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

int sb_memcmp_consttime(const void *a, const void *b, size_t len) {
    return CRYPTO_memcmp(a, b, len) == 0 ? 0 : 1;
}

int sb_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len, uint8_t out[32]) {
    unsigned int out_len = 0;
    if (key_len > 0x7fffffff) return -1;
    if (HMAC(EVP_sha256(), key, (int)key_len, data, data_len, out, &out_len) == NULL) return -1;
    return out_len == 32 ? 0 : -1;
}

int sb_sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
    unsigned int out_len = 0;
    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1) return -1;
    return out_len == 32 ? 0 : -1;
}

void *sb_public_key_from_pem(const char *pem, size_t len, int *kind, int *bits) {
    if (len > 0x7fffffff) return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) return NULL;
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL) return NULL;
    *bits = EVP_PKEY_get_bits(key);
    *kind = SB_KEY_OTHER;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        *kind = SB_KEY_RSA;
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        char group[64] = {0};
        size_t group_len = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) == 1 && strcmp(group, "prime256v1") == 0) {
            *kind = SB_KEY_EC_P256;
        }
    }
    return key;
}

void sb_public_key_free(void *key) { EVP_PKEY_free((EVP_PKEY *)key); }

static int verify_der(EVP_PKEY *key, const uint8_t *data, size_t data_len, const uint8_t *sig, size_t sig_len) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    int result = -1;
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1) {
        int r = EVP_DigestVerify(ctx, sig, sig_len, data, data_len);
        result = r == 1 ? 1 : 0;
    }
    EVP_MD_CTX_free(ctx);
    return result;
}

int sb_verify_rs256(void *key, const uint8_t *data, size_t data_len, const uint8_t *sig, size_t sig_len) {
    if (EVP_PKEY_get_base_id((EVP_PKEY *)key) != EVP_PKEY_RSA) return -1;
    return verify_der((EVP_PKEY *)key, data, data_len, sig, sig_len);
}

int sb_verify_es256(void *key, const uint8_t *data, size_t data_len, const uint8_t sig[64]) {
    if (EVP_PKEY_get_base_id((EVP_PKEY *)key) != EVP_PKEY_EC) return -1;
    ECDSA_SIG *ecdsa = ECDSA_SIG_new();
    if (ecdsa == NULL) return -1;
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    if (r == NULL || s == NULL || ECDSA_SIG_set0(ecdsa, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(ecdsa);
        return -1;
    }
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(ecdsa, &der);
    ECDSA_SIG_free(ecdsa);  // owns r and s now
    if (der_len <= 0) return -1;
    int result = verify_der((EVP_PKEY *)key, data, data_len, der, (size_t)der_len);
    OPENSSL_free(der);
    return result;
}
