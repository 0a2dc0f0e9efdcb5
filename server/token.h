/* token: the bearer-token format, sealed values (page tokens), and the only
 * module that calls OpenSSL.
 *
 * A token is  <prefix><32 random base62 chars><6 base62 chars of CRC32>.
 * The prefix tells kinds apart by eye and for secret scanners:
 *   patp_     personal token
 *   pats_     service token
 *   patscim_  SCIM token (personal or service, SCIM endpoints only)
 * 32 base62 characters carry 190 bits from RAND_bytes. The checksum is
 * zlib's CRC32 over prefix and random part, so a typo or a random string is
 * rejected by token_parse() without touching storage. Only SHA-256 of the
 * whole token string is ever stored (token_hash()).
 *
 * All functions are thread-safe. They allocate nothing, except that
 * token_hash() keeps one digest context per thread, made on the thread's
 * first call and freed when the thread exits. */
#ifndef PAT_TOKEN_H
#define PAT_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_RANDOM_CHARS   32
#define TOKEN_CHECKSUM_CHARS 6
#define TOKEN_MAX_PREFIX     8
#define TOKEN_MAX_LEN        (TOKEN_MAX_PREFIX + TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS)
#define TOKEN_HASH_BYTES     32

typedef enum {
    TOKEN_PREFIX_PERSONAL = 0,
    TOKEN_PREFIX_SERVICE = 1,
    TOKEN_PREFIX_SCIM = 2,
} token_prefix_t;

/* Writes a fresh NUL-terminated token into out (TOKEN_MAX_LEN + 1 bytes).
 * Returns 0, or -1 if the random generator failed (nothing is written). */
int token_generate(token_prefix_t prefix, char out[TOKEN_MAX_LEN + 1]);

/* Returns 0 and sets *prefix if s (len bytes, not NUL-terminated) is a
 * well-formed token with a valid checksum; -1 otherwise. */
int token_parse(const char *s, size_t len, token_prefix_t *prefix);

/* SHA-256 of the token bytes. */
void token_hash(const char *s, size_t len, uint8_t out[TOKEN_HASH_BYTES]);

/* token_parse() and token_hash() in one: 0 with the SHA-256 in out if s is
 * a well-formed token, else -1. With remember, the calling thread keeps
 * what it found in a memo of its own (TOKEN_MEMO_SLOTS, direct-mapped) and
 * answers a token it has seen again from there: a hot Verify is 2,900
 * instructions of parsing and hashing under callgrind, and the memo
 * answers in about 300. The memo holds no token: each slot is a 128-bit
 * SipHash-2-4 tag of a token under a random key of this process, and that
 * token's SHA-256. A token that is not the one remembered matches a slot
 * with probability 2^-128 per try, and a token is what it hashes to
 * forever (a revoke changes the store, never the hash), so nothing ever
 * invalidates a slot. Only well-formed tokens are remembered: a hit is a
 * token that parsed. The memo is the thread's: the loop thread passes
 * remember = 1; workers, whose misses would fill a memo each, pass 0. */
#define TOKEN_MEMO_SLOTS (1u << 16) /* 3 MiB; a hot set of 10k tokens collides in 7% */
int token_check_hash(const char *s, size_t len, int remember, uint8_t out[TOKEN_HASH_BYTES]);
/* The memo's tag of s (the caller's key to memos of its own: a prepared
 * Verify answer, svc_verify.c), and token_check_hash(s, len, 1, out) given
 * that tag, so that a caller that has it does not compute it twice. */
#define TOKEN_MEMO_TAG_BYTES 16
void token_tag(const char *s, size_t len, uint8_t tag[TOKEN_MEMO_TAG_BYTES]);
int token_check_hash_tagged(const char *s, size_t len, const uint8_t tag[TOKEN_MEMO_TAG_BYTES],
                            uint8_t out[TOKEN_HASH_BYTES]);

/* SipHash-2-4 with its 128-bit output (Aumasson and Bernstein's reference
 * algorithm), for the memo's tags. OpenSSL has it behind EVP_MAC, whose
 * dispatch costs 650 instructions per call of about 1,000; tests check
 * this one against OpenSSL's for every length up to 100 bytes. */
void token_siphash128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16]);

/* Cryptographic random bytes; 0 or -1. */
int token_random(void *buf, size_t n);

/* A fresh secret of 32 random bytes as unpadded base64url text (login
 * codes, session ids, CSRF tokens); 0 or -1. */
#define TOKEN_SECRET_LEN 43
int token_secret(char out[TOKEN_SECRET_LEN + 1]);
/* HMAC-SHA256 of msg under key, as base64url text of the same length. */
void token_mac_text(const uint8_t key[32], const char *msg, char out[TOKEN_SECRET_LEN + 1]);

/* Constant-time equality of two n-byte buffers: 1 if equal. */
int token_ct_equal(const void *a, const void *b, size_t n);

/* Constant-time comparison of secrets of any length: compares SHA-256
 * digests, so neither content nor length leaks through timing. */
int token_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

/* Sealed values: data (at most TOKEN_SEAL_MAX bytes) encrypted and
 * authenticated under a 32-byte key, bound to a context string, as
 * unpadded base64url text: AES-256-CTR with a random IV, then
 * HMAC-SHA256 over context, IV and ciphertext (encrypt-then-MAC; both keys
 * derived from `key` by HMAC). So the text shows nothing of data, and any
 * change to it, or its use under another context or key, is detected.
 * out needs TOKEN_SEALED_LEN(len) + 1 bytes; returns the text's length, or
 * 0 if the random generator failed. */
#define TOKEN_SEAL_MAX 1024
#define TOKEN_SEALED_LEN(n)                                                                        \
    ((16 + (n) + 16) / 3 * 4 + ((16 + (n) + 16) % 3 ? (16 + (n) + 16) % 3 + 1 : 0))
size_t token_seal(const uint8_t key[32], const char *context, const void *data, size_t len,
                  char *out);
/* Opens what token_seal made: writes the data to out (cap bytes) and
 * returns its length, or -1 if text is not a sealed value of this key and
 * context (altered, forged, truncated or too long). */
long token_open(const uint8_t key[32], const char *context, const char *text, void *out,
                size_t cap);

#endif
