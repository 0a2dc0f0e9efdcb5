/* token: the bearer-token format, and the only module that calls OpenSSL.
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

/* Cryptographic random bytes; 0 or -1. */
int token_random(void *buf, size_t n);

/* Constant-time equality of two n-byte buffers: 1 if equal. */
int token_ct_equal(const void *a, const void *b, size_t n);

/* Constant-time comparison of secrets of any length: compares SHA-256
 * digests, so neither content nor length leaks through timing. */
int token_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
