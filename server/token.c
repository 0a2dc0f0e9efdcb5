/* token: generation, parsing and hashing of bearer tokens (OpenSSL, zlib). */
#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char token_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static const char *const token_prefixes[] = {"patp_", "pats_", "patscim_"};

int token_random(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

int token_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int token_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    uint8_t ha[TOKEN_HASH_BYTES], hb[TOKEN_HASH_BYTES];
    token_hash(a, alen, ha);
    token_hash(b, blen, hb);
    return token_ct_equal(ha, hb, sizeof(ha));
}

/* SHA256() fetches the algorithm from the provider on every call (a lock
 * and a lookup: 3% of the network thread in a cold Verify profile); fetch
 * it once, and keep one digest context per thread. */
static EVP_MD *token_sha256;
static pthread_key_t token_ctx_key;
static pthread_once_t token_once = PTHREAD_ONCE_INIT;

static void token_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void token_init(void)
{
    token_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (token_sha256 == NULL || pthread_key_create(&token_ctx_key, token_ctx_free) != 0) abort();
}

void token_hash(const char *s, size_t len, uint8_t out[TOKEN_HASH_BYTES])
{
    pthread_once(&token_once, token_init);
    EVP_MD_CTX *ctx = pthread_getspecific(token_ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || pthread_setspecific(token_ctx_key, ctx) != 0) abort();
    }
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(ctx, token_sha256, NULL) != 1 || EVP_DigestUpdate(ctx, s, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != TOKEN_HASH_BYTES)
        abort();
}

static void token_checksum(const char *s, size_t len, char out[TOKEN_CHECKSUM_CHARS])
{
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)s, (uInt)len);
    for (int i = TOKEN_CHECKSUM_CHARS - 1; i >= 0; i--) {
        out[i] = token_alphabet[crc % 62];
        crc /= 62;
    }
}

int token_generate(token_prefix_t prefix, char out[TOKEN_MAX_LEN + 1])
{
    const char *p = token_prefixes[prefix];
    size_t plen = strlen(p);
    char buf[TOKEN_MAX_LEN + 1];
    memcpy(buf, p, plen);

    /* Rejection sampling keeps every character uniform: bytes >= 248
     * (4 * 62) are dropped rather than folded in with a bias. */
    size_t filled = 0;
    while (filled < TOKEN_RANDOM_CHARS) {
        uint8_t rnd[64];
        if (token_random(rnd, sizeof(rnd)) != 0) return -1;
        for (size_t i = 0; i < sizeof(rnd) && filled < TOKEN_RANDOM_CHARS; i++) {
            if (rnd[i] < 248) buf[plen + filled++] = token_alphabet[rnd[i] % 62];
        }
        OPENSSL_cleanse(rnd, sizeof(rnd));
    }
    token_checksum(buf, plen + TOKEN_RANDOM_CHARS, buf + plen + TOKEN_RANDOM_CHARS);
    size_t total = plen + TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS;
    buf[total] = '\0';
    memcpy(out, buf, total + 1);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

static int token_is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int token_parse(const char *s, size_t len, token_prefix_t *prefix)
{
    for (int k = 0; k < 3; k++) {
        size_t plen = strlen(token_prefixes[k]);
        if (len != plen + TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS) continue;
        if (memcmp(s, token_prefixes[k], plen) != 0) continue;
        for (size_t i = plen; i < len; i++) {
            if (!token_is_base62(s[i])) return -1;
        }
        char sum[TOKEN_CHECKSUM_CHARS];
        token_checksum(s, plen + TOKEN_RANDOM_CHARS, sum);
        if (memcmp(sum, s + plen + TOKEN_RANDOM_CHARS, TOKEN_CHECKSUM_CHARS) != 0) return -1;
        if (prefix) *prefix = (token_prefix_t)k;
        return 0;
    }
    return -1;
}
