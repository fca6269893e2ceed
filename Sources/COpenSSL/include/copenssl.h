#ifndef SWITCHBOARD_COPENSSL_H
#define SWITCHBOARD_COPENSSL_H
#include <stddef.h>
#include <stdint.h>

/// SHA-1 of `len` bytes, base64-encoded into `out` (at least 29 bytes; NUL-terminated).
/// Used for Sec-WebSocket-Accept. Returns the encoded length (28) or -1.
int sb_sha1_base64(const uint8_t *data, size_t len, char *out);

/// Fills `out` with `len` cryptographically random bytes. Returns 0 or -1.
int sb_random_bytes(uint8_t *out, size_t len);
#endif
