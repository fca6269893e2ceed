#include "gcm_small.h"
#include <immintrin.h>
#include <openssl/crypto.h>
#include <string.h>

#define TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))

int sb_gcm_small_available(void) {
    /* Relaxed atomics: every thread that races here computes and stores the same answer. */
    static int available = -1;
    int known = __atomic_load_n(&available, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
        __atomic_store_n(&available, known, __ATOMIC_RELAXED);
    }
    return known;
}

/* ---- AES key expansion (Intel's AES-NI white paper, section 4) ---- */

/* Each word of the previous round key XORed with all the words before it (w0, w0^w1,
 * w0^w1^w2, ...): the running XOR both key schedules build their next round key from. */
TARGET static inline __m128i running_xor(__m128i key) {
    __m128i t = _mm_slli_si128(key, 4);
    key = _mm_xor_si128(key, t);
    t = _mm_slli_si128(t, 4);
    key = _mm_xor_si128(key, t);
    t = _mm_slli_si128(t, 4);
    return _mm_xor_si128(key, t);
}

TARGET static inline __m128i expand_128(__m128i key, __m128i assist) {
    return _mm_xor_si128(running_xor(key), _mm_shuffle_epi32(assist, 0xff));
}

/* The odd round keys of AES-256: SubWord without RotWord or rcon (aeskeygenassist's word 2). */
TARGET static inline __m128i expand_256_odd(__m128i even, __m128i odd) {
    return _mm_xor_si128(running_xor(odd), _mm_shuffle_epi32(_mm_aeskeygenassist_si128(even, 0x00), 0xaa));
}

#define STORE(i, v) _mm_store_si128((__m128i *)k->round_keys[i], (v))

TARGET static void expand_key_128(sb_gcm_key *k, const unsigned char *key) {
    __m128i r = _mm_loadu_si128((const __m128i *)key);
    STORE(0, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x01)); STORE(1, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x02)); STORE(2, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x04)); STORE(3, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x08)); STORE(4, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x10)); STORE(5, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x20)); STORE(6, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x40)); STORE(7, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x80)); STORE(8, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x1b)); STORE(9, r);
    r = expand_128(r, _mm_aeskeygenassist_si128(r, 0x36)); STORE(10, r);
    k->rounds = 10;
}

TARGET static void expand_key_256(sb_gcm_key *k, const unsigned char *key) {
    __m128i even = _mm_loadu_si128((const __m128i *)key);
    __m128i odd = _mm_loadu_si128((const __m128i *)(key + 16));
    STORE(0, even);
    STORE(1, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x01)); STORE(2, even);
    odd = expand_256_odd(even, odd); STORE(3, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x02)); STORE(4, even);
    odd = expand_256_odd(even, odd); STORE(5, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x04)); STORE(6, even);
    odd = expand_256_odd(even, odd); STORE(7, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x08)); STORE(8, even);
    odd = expand_256_odd(even, odd); STORE(9, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x10)); STORE(10, even);
    odd = expand_256_odd(even, odd); STORE(11, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x20)); STORE(12, even);
    odd = expand_256_odd(even, odd); STORE(13, odd);
    even = expand_128(even, _mm_aeskeygenassist_si128(odd, 0x40)); STORE(14, even);
    k->rounds = 14;
}

TARGET static inline __m128i aes_block(const sb_gcm_key *k, __m128i x) {
    x = _mm_xor_si128(x, _mm_load_si128((const __m128i *)k->round_keys[0]));
    for (int i = 1; i < k->rounds; i++) x = _mm_aesenc_si128(x, _mm_load_si128((const __m128i *)k->round_keys[i]));
    return _mm_aesenclast_si128(x, _mm_load_si128((const __m128i *)k->round_keys[k->rounds]));
}

/* GF(2^128) product of two byte-reversed blocks, reduced by x^128 + x^7 + x^2 + x + 1 (Intel's
 * "Carry-Less Multiplication Instruction and its Usage for Computing the GCM Mode", rev. 2.02,
 * figure 5: the 256-bit product shifted left by one for the reflected bit order, then reduced). */
TARGET static inline __m128i gf_multiply(__m128i a, __m128i b) {
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    /* Shift the 256-bit product <hi:lo> left by one bit. */
    __m128i lo_carry = _mm_srli_epi32(lo, 31);
    __m128i hi_carry = _mm_srli_epi32(hi, 31);
    lo = _mm_slli_epi32(lo, 1);
    hi = _mm_slli_epi32(hi, 1);
    __m128i cross = _mm_srli_si128(lo_carry, 12);
    hi_carry = _mm_slli_si128(hi_carry, 4);
    lo_carry = _mm_slli_si128(lo_carry, 4);
    lo = _mm_or_si128(lo, lo_carry);
    hi = _mm_or_si128(hi, hi_carry);
    hi = _mm_or_si128(hi, cross);
    /* Reduce: first phase. */
    __m128i a1 = _mm_slli_epi32(lo, 31);
    __m128i a2 = _mm_slli_epi32(lo, 30);
    __m128i a3 = _mm_slli_epi32(lo, 25);
    a1 = _mm_xor_si128(a1, a2);
    a1 = _mm_xor_si128(a1, a3);
    __m128i carry = _mm_srli_si128(a1, 4);
    a1 = _mm_slli_si128(a1, 12);
    lo = _mm_xor_si128(lo, a1);
    /* Second phase. */
    __m128i b1 = _mm_srli_epi32(lo, 1);
    __m128i b2 = _mm_srli_epi32(lo, 2);
    __m128i b3 = _mm_srli_epi32(lo, 7);
    b1 = _mm_xor_si128(b1, b2);
    b1 = _mm_xor_si128(b1, b3);
    b1 = _mm_xor_si128(b1, carry);
    lo = _mm_xor_si128(lo, b1);
    return _mm_xor_si128(hi, lo);
}

TARGET static inline __m128i byte_reverse(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* Up to 16 bytes as a block, zero-padded. A byte loop, not memset + memcpy: the tail of a
 * chat-sized record is a few bytes, and two library calls cost more than copying them. */
static inline void load_partial(unsigned char block[16], const unsigned char *p, size_t n) {
    for (size_t i = 0; i < 16; i++) block[i] = i < n ? p[i] : 0;
}

TARGET static inline __m128i ghash_bytes(__m128i x, __m128i h, const unsigned char *p, size_t n) {
    _Alignas(16) unsigned char block[16];
    for (size_t at = 0; at < n; at += 16) {
        size_t take = n - at < 16 ? n - at : 16;
        __m128i b;
        if (take == 16) {
            b = _mm_loadu_si128((const __m128i *)(p + at));
        } else {
            load_partial(block, p + at, take);
            b = _mm_load_si128((const __m128i *)block);
        }
        x = gf_multiply(_mm_xor_si128(x, byte_reverse(b)), h);
    }
    return x;
}

TARGET static void store_hash_key(sb_gcm_key *k) {
    _mm_store_si128((__m128i *)k->hash_key, byte_reverse(aes_block(k, _mm_setzero_si128())));
}

int sb_gcm_small_init(sb_gcm_key *k, const unsigned char *key, size_t key_bytes) {
    memset(k, 0, sizeof *k);
    if (!sb_gcm_small_available()) return -1;
    if (key_bytes == 16) expand_key_128(k, key);
    else if (key_bytes == 32) expand_key_256(k, key);
    else return -1;
    store_hash_key(k);
    return 0;
}

/* Four blocks through AES at once: AESENC has a latency of several cycles but a throughput of
 * one per cycle, so four interleaved blocks cost little more than one. */
TARGET static inline void aes_four(const sb_gcm_key *k, __m128i *a, __m128i *b, __m128i *c, __m128i *d) {
    __m128i r = _mm_load_si128((const __m128i *)k->round_keys[0]);
    __m128i x0 = _mm_xor_si128(*a, r), x1 = _mm_xor_si128(*b, r), x2 = _mm_xor_si128(*c, r), x3 = _mm_xor_si128(*d, r);
    for (int i = 1; i < k->rounds; i++) {
        r = _mm_load_si128((const __m128i *)k->round_keys[i]);
        x0 = _mm_aesenc_si128(x0, r); x1 = _mm_aesenc_si128(x1, r);
        x2 = _mm_aesenc_si128(x2, r); x3 = _mm_aesenc_si128(x3, r);
    }
    r = _mm_load_si128((const __m128i *)k->round_keys[k->rounds]);
    *a = _mm_aesenclast_si128(x0, r); *b = _mm_aesenclast_si128(x1, r);
    *c = _mm_aesenclast_si128(x2, r); *d = _mm_aesenclast_si128(x3, r);
}

/* Blocks of keystream a record of SB_GCM_SMALL_MAX_BYTES needs, plus E(K, J0) first, rounded
 * up to a multiple of four. */
#define KEYSTREAM_BLOCKS ((SB_GCM_SMALL_MAX_BYTES / 16 + 1 + 3) / 4 * 4)

/* CTR over `len` bytes from counter 2, and GHASH over the ciphertext (`in` when opening,
 * `out` when sealing); returns the tag E(K, J0) XOR GHASH. The keystream is made first, four
 * blocks at a time (E(K, J0) is block 0), then used. */
TARGET static __m128i gcm(const sb_gcm_key *k, const unsigned char nonce[12], const unsigned char *aad, size_t aad_len,
                          const unsigned char *in, unsigned char *out, size_t len, int sealing) {
    __m128i h = _mm_load_si128((const __m128i *)k->hash_key);
    _Alignas(16) unsigned char counter[16];
    memcpy(counter, nonce, 12);
    counter[12] = counter[13] = counter[14] = 0;
    counter[15] = 1;
    __m128i j0 = _mm_load_si128((const __m128i *)counter);
    size_t data_blocks = (len + 15) / 16;
    size_t blocks = data_blocks + 1;
    __m128i stream[KEYSTREAM_BLOCKS];
    for (size_t i = 0; i < blocks; i += 4) {
        /* Block i holds counter i + 1: J0 (1) first, then the data's 2, 3, ... (the 32-bit
         * counter cannot wrap: at most 2^14 + 256 bytes). */
        __m128i a = _mm_insert_epi32(j0, (int)__builtin_bswap32((uint32_t)i + 1), 3);
        __m128i b = _mm_insert_epi32(j0, (int)__builtin_bswap32((uint32_t)i + 2), 3);
        __m128i c = _mm_insert_epi32(j0, (int)__builtin_bswap32((uint32_t)i + 3), 3);
        __m128i d = _mm_insert_epi32(j0, (int)__builtin_bswap32((uint32_t)i + 4), 3);
        aes_four(k, &a, &b, &c, &d);
        stream[i] = a; stream[i + 1] = b; stream[i + 2] = c; stream[i + 3] = d;
    }
    __m128i x = ghash_bytes(_mm_setzero_si128(), h, aad, aad_len);
    _Alignas(16) unsigned char block[16];
    for (size_t i = 0; i < data_blocks; i++) {
        size_t at = i * 16;
        size_t take = len - at < 16 ? len - at : 16;
        if (take == 16) {
            __m128i data = _mm_loadu_si128((const __m128i *)(in + at));
            if (!sealing) x = gf_multiply(_mm_xor_si128(x, byte_reverse(data)), h);
            __m128i result = _mm_xor_si128(data, stream[i + 1]);
            _mm_storeu_si128((__m128i *)(out + at), result);
            if (sealing) x = gf_multiply(_mm_xor_si128(x, byte_reverse(result)), h);
        } else {
            load_partial(block, in + at, take);
            __m128i data = _mm_load_si128((const __m128i *)block);
            if (!sealing) x = gf_multiply(_mm_xor_si128(x, byte_reverse(data)), h);
            _mm_store_si128((__m128i *)block, _mm_xor_si128(data, stream[i + 1]));
            for (size_t b = 0; b < take; b++) out[at + b] = block[b];
            if (sealing) {
                /* GHASH takes the ciphertext zero-padded, not the keystream's tail. */
                for (size_t b = take; b < 16; b++) block[b] = 0;
                x = gf_multiply(_mm_xor_si128(x, byte_reverse(_mm_load_si128((const __m128i *)block))), h);
            }
        }
    }
    /* The lengths block: len(A) || len(C) in bits, big-endian; byte-reversed that is len(C)
     * in the low 64 bits and len(A) in the high ones. */
    __m128i lengths = _mm_set_epi64x((long long)(aad_len * 8), (long long)(len * 8));
    x = gf_multiply(_mm_xor_si128(x, lengths), h);
    /* The keystream left on the stack is not wiped: AES is a permutation, so it says nothing
     * of the key, and what it says of the record (plaintext XOR ciphertext) is in the caller's
     * buffers anyway, as OpenSSL's GCM leaves its counter blocks in its context. */
    return _mm_xor_si128(byte_reverse(x), stream[0]);
}

TARGET int sb_gcm_small_seal(const sb_gcm_key *k, const unsigned char nonce[12], const unsigned char *aad, size_t aad_len,
                             const unsigned char *in, unsigned char *out, size_t len, unsigned char tag[16]) {
    if (len > SB_GCM_SMALL_MAX_BYTES) return -1;  /* the keystream buffer's size */
    _mm_storeu_si128((__m128i *)tag, gcm(k, nonce, aad, aad_len, in, out, len, 1));
    return 0;
}

TARGET int sb_gcm_small_open(const sb_gcm_key *k, const unsigned char nonce[12], const unsigned char *aad, size_t aad_len,
                             const unsigned char *in, unsigned char *out, size_t len, const unsigned char tag[16]) {
    if (len > SB_GCM_SMALL_MAX_BYTES) return -1;  /* the keystream buffer's size */
    _Alignas(16) unsigned char expected[16];
    _mm_store_si128((__m128i *)expected, gcm(k, nonce, aad, aad_len, in, out, len, 0));
    return CRYPTO_memcmp(expected, tag, 16) == 0 ? 0 : -1;
}

void sb_gcm_small_clear(sb_gcm_key *k) { OPENSSL_cleanse(k, sizeof *k); }
