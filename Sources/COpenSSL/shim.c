#include "copenssl.h"
#include <openssl/evp.h>
#include <openssl/rand.h>

int sb_sha1_base64(const uint8_t *data, size_t len, char *out) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(data, len, digest, &digest_len, EVP_sha1(), NULL) != 1) return -1;
    return EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len);
}

int sb_random_bytes(uint8_t *out, size_t len) {
    return RAND_bytes(out, (int)len) == 1 ? 0 : -1;
}
