#ifndef SWITCHBOARD_COPENSSL_TLS_H
#define SWITCHBOARD_COPENSSL_TLS_H
#include <stddef.h>
#include <stdint.h>

/// Server-side TLS for the shards, through memory BIOs: the shard owns the socket, this code
/// only turns ciphertext into plaintext and back. Thread rules: a context (`sb_tls_ctx`) is
/// immutable once built and may be used by every shard at once (OpenSSL reference-counts it);
/// a connection (`sb_tls_conn`) belongs to one shard thread.

typedef struct ssl_ctx_st sb_tls_ctx;
typedef struct sb_tls_conn sb_tls_conn;

/// Builds a server context from a PEM certificate chain and a PEM private key: TLS 1.2 and
/// 1.3 only, forward-secret AEAD ciphers for 1.2, renegotiation refused, no compression,
/// ALPN `http/1.1`, stateless session tickets with the process-wide rotating key ring.
/// Refuses a key that does not match the certificate and a certificate that is expired or
/// not yet valid. On failure returns NULL and writes a message to `err`.
sb_tls_ctx *sb_tls_ctx_new(const char *chain_path, const char *key_path, char *err, size_t err_len);
/// Adds a context whose certificate is chosen when the client's SNI name matches it
/// (X509_check_host against its leaf). The main context keeps a reference. 0 or -1.
int sb_tls_ctx_add_sni(sb_tls_ctx *main_ctx, sb_tls_ctx *extra);
void sb_tls_ctx_free(sb_tls_ctx *ctx);
/// Seconds after which a new ticket key replaces the current one (the previous one is still
/// accepted, with a fresh ticket issued). Process-wide. Default 3600.
void sb_tls_set_ticket_rotation_seconds(long seconds);
/// Ticket keys generated so far (process-wide; for tests and metrics).
long sb_tls_ticket_key_generations(void);
/// Forces a rotation now (tests, or an operator after a suspected key leak).
void sb_tls_rotate_ticket_key(void);

sb_tls_conn *sb_tls_conn_new(sb_tls_ctx *ctx);
void sb_tls_conn_free(sb_tls_conn *c);
/// Hands received ciphertext over. Returns the bytes taken (all) or -1.
int sb_tls_feed(sb_tls_conn *c, const void *bytes, size_t len);
/// Advances the handshake: 1 done, 0 needs more input, -1 failed (see sb_tls_error).
int sb_tls_handshake(sb_tls_conn *c);
/// Decrypts into `out`: >0 bytes, 0 needs more input, -1 the peer sent close_notify,
/// -2 failed (see sb_tls_error).
int sb_tls_read(sb_tls_conn *c, void *out, size_t cap);
/// The look-ahead of the shard's event loop (SwitchboardIO/SlotPrefetch.swift): asks for the
/// cache lines a record in each direction reads first (the connection's record-layer state, both
/// directions' keys, its buffers' bookkeeping), without reading any of them. A hint: nothing is
/// read or written, so it is safe on any live connection, in any state.
void sb_tls_prefetch(const sb_tls_conn *c);
/// 1 when a further sb_tls_read may return data or an event (ciphertext left in the read BIO,
/// or a record buffered in the SSL), 0 when it would only answer "needs more input".
int sb_tls_has_input(sb_tls_conn *c);
/// Encrypts `len` bytes into the outgoing BIO. Returns `len` or -1 (see sb_tls_error).
int sb_tls_write(sb_tls_conn *c, const void *bytes, size_t len);
/// Keeps a copy of `len` bytes of plaintext for the next sb_tls_uncork (Switchboard's cork: a
/// fan-out subscriber's messages of one loop turn become one record, and the sender keeps no
/// reference to them). Either record layer. 0, or -1 when memory ran out.
int sb_tls_cork(sb_tls_conn *c, const void *bytes, size_t len);
/// Plaintext corked and not yet written.
size_t sb_tls_corked_bytes(const sb_tls_conn *c);
/// Encrypts what is corked (sb_tls_write: one record per 16 KiB) and empties the cork (a buffer
/// of more than 1 KiB is freed), then `then_len` bytes at `then` (0: none) as if they had been
/// corked too, without copying more of them than tops up the cork's last record: a large
/// message sent after small ones. 0, or -1 when the write failed (the session is over).
int sb_tls_uncork(sb_tls_conn *c, const void *then, size_t then_len);
/// Forgets what is corked (the connection is closing).
void sb_tls_drop_corked(sb_tls_conn *c);
/// Queues a close_notify alert in the outgoing BIO.
void sb_tls_close_notify(sb_tls_conn *c);
/// Ciphertext waiting to be sent.
size_t sb_tls_pending_out(sb_tls_conn *c);
/// Moves up to `cap` bytes of waiting ciphertext into `out`; returns the count.
int sb_tls_take_out(sb_tls_conn *c, void *out, size_t cap);
/// Whether this server connection makes its own TLS 1.3 application-data records once the
/// handshake completes (AES-GCM / ChaCha20-Poly1305 through EVP, keys from the negotiated
/// traffic secrets, key updates answered) instead of OpenSSL's record layer, which costs ~1 µs
/// of user time per record in OpenSSL 3.0. Set before the handshake; TLS 1.2 sessions and CCM
/// suites stay with OpenSSL whatever this says. Off unless set. On a client connection (the
/// load generator's) the same switch happens when the client's handshake completes; the
/// server's session tickets are then read and dropped.
void sb_tls_set_own_records(sb_tls_conn *c, int enabled);
/// 1 when the session's records are Switchboard's own (the switch happened), else 0.
int sb_tls_uses_own_records(sb_tls_conn *c);
/// KeyUpdate messages the peer sent on the own record layer.
long sb_tls_key_updates(sb_tls_conn *c);
/// Renegotiation attempts seen on this connection (a ClientHello after the handshake).
int sb_tls_renegotiation_attempts(sb_tls_conn *c);
/// 1 when the session was resumed (ticket).
int sb_tls_session_reused(sb_tls_conn *c);
/// "TLSv1.3", "TLSv1.2", ...
const char *sb_tls_version(sb_tls_conn *c);
/// The negotiated ALPN protocol into `out` (NUL-terminated); its length, 0 when none.
int sb_tls_alpn(sb_tls_conn *c, char *out, size_t cap);
/// The SNI name the client sent into `out`; its length, 0 when none.
int sb_tls_server_name(sb_tls_conn *c, char *out, size_t cap);
/// Why the last operation of this thread failed (OpenSSL's error queue, then cleared).
void sb_tls_error(char *out, size_t cap);

// ---- Client side (the Swift client SDK): a non-blocking socket the caller connected. ----

typedef struct sb_tls_client sb_tls_client;
/// TLS 1.2+ client state on connected, non-blocking `fd`, verifying the server's certificate
/// against `ca_file` (PEM; NULL: the system trust store) and `host` (DNS name or IP literal;
/// also sent as SNI when it is a name). ALPN http/1.1. Drive the handshake with
/// sb_tls_client_handshake. On failure returns NULL with a message in `err`. The caller keeps
/// owning `fd`.
sb_tls_client *sb_tls_client_new(int fd, const char *host, const char *ca_file, char *err, size_t err_len);
/// One handshake step: 1 done, 0 wait until readable, 2 wait until writable, -1 failed (message in `err`).
int sb_tls_client_handshake(sb_tls_client *c, char *err, size_t err_len);
/// Writes what the socket takes now: >0 bytes written, 0 wait until writable, -3 wait until
/// readable, -1 failed. Retry with the remaining bytes (the buffer may move).
int sb_tls_client_write_some(sb_tls_client *c, const void *bytes, size_t len);
/// >0 bytes; 0 nothing yet (a non-data record was processed, or the socket would block); -1 the
/// peer closed (close_notify or EOF); -2 failed.
int sb_tls_client_read(sb_tls_client *c, void *out, size_t cap);
/// Decrypted bytes OpenSSL holds that a read returns without touching the socket.
int sb_tls_client_pending(sb_tls_client *c);
/// Sends close_notify (best effort) and frees; does not close `fd`.
void sb_tls_client_free(sb_tls_client *c);

// ---- Client side through memory BIOs (the load generator: its own epoll loop, no blocking). ----

/// A client context that does NOT verify the server (a benchmark against loopback only);
/// TLS 1.2+, ALPN http/1.1, no session resumption (every connection is a full handshake).
sb_tls_ctx *sb_tls_bench_client_ctx_new(void);
/// A client connection using the sb_tls_conn calls above (feed, handshake, read, write,
/// pending_out, take_out, free).
sb_tls_conn *sb_tls_conn_new_client(sb_tls_ctx *ctx);

// ---- Test support: a client that misbehaves on purpose (memory-BIO client connections only). ----

/// Lets a bench client context ask for session tickets (sb_tls_bench_client_ctx_new turns them
/// off), so that a TLS 1.3 server sends its tickets after the handshake.
void sb_tls_test_client_accepts_tickets(sb_tls_ctx *ctx);
/// 1 when the client's session holds a ticket from the server (TLS 1.3 NewSessionTicket read).
int sb_tls_test_client_has_ticket(sb_tls_conn *c);
/// Caps a bench client context at TLS 1.2 (the server then keeps OpenSSL's record layer).
void sb_tls_test_client_max_tls12(sb_tls_ctx *ctx);
/// Keeps this client connection's TLS 1.3 client application traffic secret (call before its
/// handshake), so that sb_tls_test_seal_client_record can forge records a real client's keys
/// would make.
void sb_tls_test_capture_secrets(sb_tls_conn *c);
/// Seals one record as the client `c` would with sequence number `sequence`: content type
/// `type`, `len` bytes, `padding` zero bytes, into `out`. The record's size, or -1.
long sb_tls_test_seal_client_record(sb_tls_conn *c, uint64_t sequence, uint8_t type, const void *bytes,
                                    size_t len, size_t padding, void *out, size_t cap);
/// Queues a KeyUpdate from the client (`request`: 1 asks the server to update its keys too) and
/// writes it into the outgoing BIO. 0 or -1.
int sb_tls_test_key_update(sb_tls_conn *c, int request);
/// Pads every record this connection writes to a multiple of `block` bytes (0 turns it off).
int sb_tls_test_block_padding(sb_tls_conn *c, size_t block);
/// Compares the short-record AES-GCM (AES-NI + PCLMULQDQ, gcm_small.c) with OpenSSL's EVP
/// AES-GCM on every plaintext length 0...max_len (at most 512, its largest; pseudo-random keys, nonces, AAD of 0-20 bytes,
/// data), for a 16- or 32-byte key: the same ciphertext and tag, each opens the other's, and a
/// flipped tag or ciphertext bit is refused. Also checks McGrew and Viega's test cases 1 and 2.
/// The number of mismatches, or -1 when this CPU lacks the instructions.
int sb_tls_test_gcm_small_matches_evp(size_t key_bytes, size_t max_len);
/// Makes every own-layer record go through EVP (1) or short ones through gcm_small (0). Tests.
void sb_tls_test_force_evp(int force);
/// 1 when this CPU runs the short-record AES-GCM.
int sb_tls_gcm_small_available(void);
/// HKDF-Expand-Label with SHA-256 (RFC 8446 section 7.1), for a known-answer test. 0 or -1.
int sb_tls_test_expand_label_sha256(const uint8_t *secret, size_t secret_len, const char *label,
                                    uint8_t *out, size_t out_len);
#endif
