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

/* The 256-bit carry-less product of a and b, unreduced, added (XOR) into lo:mid:hi (mid is the
 * middle 128 bits, folded in by `reduce`). Products added together before one reduction are
 * the reduction of their sum: shifting and reducing are linear. */
TARGET static inline void clmul_add(__m128i a, __m128i b, __m128i *lo, __m128i *mid, __m128i *hi) {
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *mid = _mm_xor_si128(*mid, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01)));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
}

/* lo:mid:hi (see clmul_add) reduced by x^128 + x^7 + x^2 + x + 1 (Intel's "Carry-Less
 * Multiplication Instruction and its Usage for Computing the GCM Mode", rev. 2.02, figure 5:
 * the 256-bit product shifted left by one for the reflected bit order, then reduced). */
TARGET static inline __m128i reduce(__m128i lo, __m128i mid, __m128i hi) {
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

/* GF(2^128) product of two byte-reversed blocks. */
TARGET static inline __m128i gf_multiply(__m128i a, __m128i b) {
    __m128i lo = _mm_setzero_si128(), mid = _mm_setzero_si128(), hi = _mm_setzero_si128();
    clmul_add(a, b, &lo, &mid, &hi);
    return reduce(lo, mid, hi);
}

TARGET static inline __m128i byte_reverse(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* 0 to 8 bytes as the low end of a 64-bit word, the rest zero: two overlapping 4-byte loads,
 * or three single bytes (n < 4), never a byte past `n`. The branches depend on the length
 * only, which the record's header tells anyway, not on the data. */
static inline uint64_t load_up_to_8(const unsigned char *p, size_t n) {
    if (n >= 4) {
        uint32_t first, last;
        memcpy(&first, p, 4);
        memcpy(&last, p + n - 4, 4);
        return (uint64_t)first | ((uint64_t)last << ((n - 4) * 8));
    }
    if (n == 0) return 0;
    return (uint64_t)p[0] | ((uint64_t)p[n >> 1] << ((n >> 1) * 8)) | ((uint64_t)p[n - 1] << ((n - 1) * 8));
}

/* The low `n` bytes (0 to 8) of `v` to `p`, the same way: overlapping writes put the same bytes
 * twice, nothing is written past `n`. */
static inline void store_up_to_8(unsigned char *p, uint64_t v, size_t n) {
    if (n >= 4) {
        uint32_t first = (uint32_t)v, last = (uint32_t)(v >> ((n - 4) * 8));
        memcpy(p, &first, 4);
        memcpy(p + n - 4, &last, 4);
        return;
    }
    if (n == 0) return;
    p[0] = (unsigned char)v;
    p[n >> 1] = (unsigned char)(v >> ((n >> 1) * 8));
    p[n - 1] = (unsigned char)(v >> ((n - 1) * 8));
}

/* Up to 15 bytes as a block, zero-padded, without reading past them. Not a byte loop (a loop of
 * 16 was ~60 instructions, and a chat record has two partial blocks: its header, the
 * additional data, and its tail) and not memcpy into a zeroed block (a library call). */
TARGET static inline __m128i load_partial(const unsigned char *p, size_t n) {
    if (n >= 8) {
        uint64_t low;
        memcpy(&low, p, 8);
        return _mm_set_epi64x((long long)load_up_to_8(p + 8, n - 8), (long long)low);
    }
    return _mm_set_epi64x(0, (long long)load_up_to_8(p, n));
}

/* The first `n` bytes (under 16) of `v` to `p`. */
TARGET static inline void store_partial(unsigned char *p, __m128i v, size_t n) {
    uint64_t low = (uint64_t)_mm_cvtsi128_si64(v);
    if (n >= 8) {
        memcpy(p, &low, 8);
        store_up_to_8(p + 8, (uint64_t)_mm_extract_epi64(v, 1), n - 8);
    } else {
        store_up_to_8(p, low, n);
    }
}

/* GHASH of `n` bytes (the last block zero-padded) continuing from `x`. Four whole blocks at a
 * time with one reduction: ((((x + c1)H + c2)H + c3)H + c4)H = (x + c1)H^4 + c2 H^3 + c3 H^2
 * + c4 H, the four products summed unreduced (a reduction was two thirds of a block's
 * instructions, and the four products do not wait on each other as the chain of single
 * blocks does). */
TARGET static inline __m128i ghash_bytes(const sb_gcm_key *k, __m128i x, const unsigned char *p, size_t n) {
    __m128i h = _mm_load_si128((const __m128i *)k->hash_key);
    size_t at = 0;
    if (n >= 64) {
        __m128i h2 = _mm_load_si128((const __m128i *)k->hash_key_powers[0]);
        __m128i h3 = _mm_load_si128((const __m128i *)k->hash_key_powers[1]);
        __m128i h4 = _mm_load_si128((const __m128i *)k->hash_key_powers[2]);
        for (; n - at >= 64; at += 64) {
            __m128i lo = _mm_setzero_si128(), mid = _mm_setzero_si128(), hi = _mm_setzero_si128();
            clmul_add(_mm_xor_si128(x, byte_reverse(_mm_loadu_si128((const __m128i *)(p + at)))), h4, &lo, &mid, &hi);
            clmul_add(byte_reverse(_mm_loadu_si128((const __m128i *)(p + at + 16))), h3, &lo, &mid, &hi);
            clmul_add(byte_reverse(_mm_loadu_si128((const __m128i *)(p + at + 32))), h2, &lo, &mid, &hi);
            clmul_add(byte_reverse(_mm_loadu_si128((const __m128i *)(p + at + 48))), h, &lo, &mid, &hi);
            x = reduce(lo, mid, hi);
        }
    }
    for (; at < n; at += 16) {
        size_t take = n - at < 16 ? n - at : 16;
        __m128i b = take == 16 ? _mm_loadu_si128((const __m128i *)(p + at)) : load_partial(p + at, take);
        x = gf_multiply(_mm_xor_si128(x, byte_reverse(b)), h);
    }
    return x;
}

TARGET static void store_hash_key(sb_gcm_key *k) {
    __m128i h = byte_reverse(aes_block(k, _mm_setzero_si128()));
    _mm_store_si128((__m128i *)k->hash_key, h);
    __m128i power = h;
    for (int i = 0; i < 3; i++) {
        power = gf_multiply(power, h);
        _mm_store_si128((__m128i *)k->hash_key_powers[i], power);
    }
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
 * one per cycle, so four interleaved blocks cost little more than one. `rounds` is a constant
 * where this is inlined (aes_four), so the loop unrolls: counting the rounds at run time was
 * a third of the instructions of a 16-block record. */
TARGET static inline void aes_four_rounds(const sb_gcm_key *k, const int rounds, __m128i *a, __m128i *b, __m128i *c, __m128i *d) {
    __m128i r = _mm_load_si128((const __m128i *)k->round_keys[0]);
    __m128i x0 = _mm_xor_si128(*a, r), x1 = _mm_xor_si128(*b, r), x2 = _mm_xor_si128(*c, r), x3 = _mm_xor_si128(*d, r);
#pragma clang loop unroll(full)
    for (int i = 1; i < rounds; i++) {
        r = _mm_load_si128((const __m128i *)k->round_keys[i]);
        x0 = _mm_aesenc_si128(x0, r); x1 = _mm_aesenc_si128(x1, r);
        x2 = _mm_aesenc_si128(x2, r); x3 = _mm_aesenc_si128(x3, r);
    }
    r = _mm_load_si128((const __m128i *)k->round_keys[rounds]);
    *a = _mm_aesenclast_si128(x0, r); *b = _mm_aesenclast_si128(x1, r);
    *c = _mm_aesenclast_si128(x2, r); *d = _mm_aesenclast_si128(x3, r);
}

TARGET static inline void aes_four(const sb_gcm_key *k, __m128i *a, __m128i *b, __m128i *c, __m128i *d) {
    if (k->rounds == 14) aes_four_rounds(k, 14, a, b, c, d);
    else aes_four_rounds(k, 10, a, b, c, d);
}

/* Blocks of keystream a record of SB_GCM_SMALL_MAX_BYTES needs, plus E(K, J0) first, rounded
 * up to a multiple of four. */
#define KEYSTREAM_BLOCKS ((SB_GCM_SMALL_MAX_BYTES / 16 + 1 + 3) / 4 * 4)

/* CTR over `len` bytes from counter 2, and GHASH over the ciphertext (`in` when opening,
 * `out` when sealing); returns the tag E(K, J0) XOR GHASH. The keystream is made first, four
 * blocks at a time (E(K, J0) is block 0), then used; GHASH is its own pass (four blocks per
 * reduction, `ghash_bytes`). */
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
    __m128i x = ghash_bytes(k, _mm_setzero_si128(), aad, aad_len);
    /* GHASH takes the ciphertext: opening hashes it before decrypting it (in == out is
     * allowed), sealing after making it. */
    if (!sealing) x = ghash_bytes(k, x, in, len);
    size_t whole = len / 16;
    for (size_t i = 0; i < whole; i++) {
        __m128i data = _mm_loadu_si128((const __m128i *)(in + i * 16));
        _mm_storeu_si128((__m128i *)(out + i * 16), _mm_xor_si128(data, stream[i + 1]));
    }
    if (len % 16) {
        size_t at = whole * 16;
        store_partial(out + at, _mm_xor_si128(load_partial(in + at, len % 16), stream[whole + 1]), len % 16);
    }
    if (sealing) x = ghash_bytes(k, x, out, len);
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
