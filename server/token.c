/* token: generation, parsing and hashing of bearer tokens (OpenSSL, zlib). */
#include "token.h"

#include <endian.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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

/* ---------------------------------------------------------------- the memo */

#define TOKEN_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define TOKEN_SIPROUND                                                                             \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = TOKEN_ROTL(v1, 13);                                                                   \
        v1 ^= v0;                                                                                  \
        v0 = TOKEN_ROTL(v0, 32);                                                                   \
        v2 += v3;                                                                                  \
        v3 = TOKEN_ROTL(v3, 16);                                                                   \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = TOKEN_ROTL(v3, 21);                                                                   \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = TOKEN_ROTL(v1, 17);                                                                   \
        v1 ^= v2;                                                                                  \
        v2 = TOKEN_ROTL(v2, 32);                                                                   \
    } while (0)

static uint64_t token_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

void token_siphash128(const uint8_t key[16], const void *data, size_t len, uint8_t out[16])
{
    const uint8_t *p = data;
    uint64_t k0 = token_le64(key), k1 = token_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1 ^ 0xee,
             v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = token_le64(p + i);
        v3 ^= m;
        TOKEN_SIPROUND;
        TOKEN_SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    TOKEN_SIPROUND;
    TOKEN_SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    for (int r = 0; r < 4; r++)
        TOKEN_SIPROUND;
    uint64_t h0 = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    for (int r = 0; r < 4; r++)
        TOKEN_SIPROUND;
    uint64_t h1 = v0 ^ v1 ^ v2 ^ v3;
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(h0 >> (8 * i));
        out[8 + i] = (uint8_t)(h1 >> (8 * i));
    }
}

typedef struct {
    uint8_t tag[16];
    uint8_t hash[TOKEN_HASH_BYTES];
} token_memo_slot_t;

static uint8_t token_memo_key[16];
static pthread_once_t token_memo_once = PTHREAD_ONCE_INIT;
static pthread_key_t token_memo_tls;
static __thread token_memo_slot_t *token_memo; /* this thread's, calloc'd at first use */

static void token_memo_free(void *m)
{
    OPENSSL_cleanse(m, TOKEN_MEMO_SLOTS * sizeof(token_memo_slot_t));
    free(m);
}

static void token_memo_init(void)
{
    if (token_random(token_memo_key, sizeof(token_memo_key)) != 0 ||
        pthread_key_create(&token_memo_tls, token_memo_free) != 0)
        abort();
}

static token_memo_slot_t *token_memo_slot(const uint8_t tag[16])
{
    if (token_memo == NULL) {
        /* Pages of a calloc this size come from mmap, untouched until
         * used: a small hot set costs what it fills. */
        token_memo = calloc(TOKEN_MEMO_SLOTS, sizeof(*token_memo));
        if (token_memo == NULL || pthread_setspecific(token_memo_tls, token_memo) != 0) abort();
    }
    uint32_t i;
    memcpy(&i, tag, sizeof(i));
    return &token_memo[i & (TOKEN_MEMO_SLOTS - 1)];
}

void token_tag(const char *s, size_t len, uint8_t tag[TOKEN_MEMO_TAG_BYTES])
{
    pthread_once(&token_memo_once, token_memo_init);
    token_siphash128(token_memo_key, s, len, tag);
}

/* The check, remembered in slot under tag when slot is not NULL. */
static int token_check_in(const char *s, size_t len, token_memo_slot_t *slot, const uint8_t *tag,
                          uint8_t out[TOKEN_HASH_BYTES])
{
    if (slot != NULL && CRYPTO_memcmp(slot->tag, tag, TOKEN_MEMO_TAG_BYTES) == 0) {
        memcpy(out, slot->hash, TOKEN_HASH_BYTES);
        return 0;
    }
    if (token_parse(s, len, NULL) != 0) return -1;
    token_hash(s, len, out);
    if (slot != NULL) {
        memcpy(slot->tag, tag, TOKEN_MEMO_TAG_BYTES);
        memcpy(slot->hash, out, TOKEN_HASH_BYTES);
    }
    return 0;
}

int token_check_hash(const char *s, size_t len, int remember, uint8_t out[TOKEN_HASH_BYTES])
{
    if (len == 0 || len > TOKEN_MAX_LEN) return -1;
    if (!remember) return token_check_in(s, len, NULL, NULL, out);
    uint8_t tag[TOKEN_MEMO_TAG_BYTES];
    token_tag(s, len, tag);
    return token_check_in(s, len, token_memo_slot(tag), tag, out);
}

int token_check_hash_tagged(const char *s, size_t len, const uint8_t tag[TOKEN_MEMO_TAG_BYTES],
                            uint8_t out[TOKEN_HASH_BYTES])
{
    if (len == 0 || len > TOKEN_MAX_LEN) return -1;
    return token_check_in(s, len, token_memo_slot(tag), tag, out);
}

/* ---------------------------------------------------------------- checksums and parsing */

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

/* ---------------------------------------------------------------- sealed values */

#define TOKEN_IV_BYTES  16
#define TOKEN_TAG_BYTES 16

/* The two keys of a seal, derived from its key so that the cipher and the
 * MAC never share one. */
static void token_seal_keys(const uint8_t key[32], uint8_t enc[32], uint8_t mac[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)"patd seal enc", 13, enc, &n);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)"patd seal mac", 13, mac, &n);
}

static void token_seal_tag(const uint8_t mac[32], const char *context, const uint8_t *msg,
                           size_t len, uint8_t tag[TOKEN_TAG_BYTES])
{
    /* context with its NUL, then the message: one HMAC over both. */
    uint8_t buf[512 + TOKEN_IV_BYTES + TOKEN_SEAL_MAX], full[32];
    size_t cl = strnlen(context, 511) + 1;
    memcpy(buf, context, cl - 1);
    buf[cl - 1] = '\0';
    memcpy(buf + cl, msg, len);
    unsigned int n = sizeof(full);
    HMAC(EVP_sha256(), mac, 32, buf, cl + len, full, &n);
    memcpy(tag, full, TOKEN_TAG_BYTES);
}

static int token_ctr(const uint8_t enc[32], const uint8_t iv[TOKEN_IV_BYTES], const uint8_t *in,
                     size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0,
        ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_ctr(), NULL, enc, iv) == 1 &&
             EVP_EncryptUpdate(c, out, &n, in, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, out + n, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

/* Unpadded base64url of in into out (NUL-terminated); returns its length. */
static size_t token_b64url(const uint8_t *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[n] = '\0';
    return (size_t)n;
}

size_t token_seal(const uint8_t key[32], const char *context, const void *data, size_t len,
                  char *out)
{
    uint8_t enc[32], mac[32], raw[TOKEN_IV_BYTES + TOKEN_SEAL_MAX + TOKEN_TAG_BYTES];
    if (len > TOKEN_SEAL_MAX || token_random(raw, TOKEN_IV_BYTES) != 0) return 0;
    token_seal_keys(key, enc, mac);
    size_t rl = 0;
    if (token_ctr(enc, raw, data, len, raw + TOKEN_IV_BYTES) == 0) {
        token_seal_tag(mac, context, raw, TOKEN_IV_BYTES + len, raw + TOKEN_IV_BYTES + len);
        rl = token_b64url(raw, TOKEN_IV_BYTES + len + TOKEN_TAG_BYTES, out);
    }
    OPENSSL_cleanse(enc, sizeof(enc));
    OPENSSL_cleanse(mac, sizeof(mac));
    return rl;
}

long token_open(const uint8_t key[32], const char *context, const char *text, void *out, size_t cap)
{
    enum { RAW_MAX = TOKEN_IV_BYTES + TOKEN_SEAL_MAX + TOKEN_TAG_BYTES };
    size_t tl = strnlen(text, TOKEN_SEALED_LEN(TOKEN_SEAL_MAX) + 1);
    if (tl > TOKEN_SEALED_LEN(TOKEN_SEAL_MAX) || tl % 4 == 1) return -1;
    char b64[TOKEN_SEALED_LEN(TOKEN_SEAL_MAX) + 4];
    for (size_t i = 0; i < tl; i++) {
        char c = text[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok) return -1;
        b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t pad = (4 - tl % 4) % 4;
    memset(b64 + tl, '=', pad);
    uint8_t raw[RAW_MAX + 3];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)(tl + pad));
    if (n < 0) return -1;
    size_t rl = (size_t)n - pad;
    if (rl < TOKEN_IV_BYTES + TOKEN_TAG_BYTES || rl > RAW_MAX) return -1;
    /* One text per value: unused low bits of the last character must be
     * zero, so that no second spelling of a sealed value is accepted. */
    char again[TOKEN_SEALED_LEN(TOKEN_SEAL_MAX) + 1];
    if (token_b64url(raw, rl, again) != tl || memcmp(again, text, tl) != 0) return -1;
    size_t dl = rl - TOKEN_IV_BYTES - TOKEN_TAG_BYTES;
    if (dl > cap) return -1;
    uint8_t enc[32], mac[32], tag[TOKEN_TAG_BYTES];
    token_seal_keys(key, enc, mac);
    token_seal_tag(mac, context, raw, TOKEN_IV_BYTES + dl, tag);
    long r = -1;
    if (CRYPTO_memcmp(tag, raw + TOKEN_IV_BYTES + dl, TOKEN_TAG_BYTES) == 0 &&
        token_ctr(enc, raw, raw + TOKEN_IV_BYTES, dl, out) == 0)
        r = (long)dl;
    OPENSSL_cleanse(enc, sizeof(enc));
    OPENSSL_cleanse(mac, sizeof(mac));
    return r;
}

int token_secret(char out[TOKEN_SECRET_LEN + 1])
{
    uint8_t rnd[32];
    char text[48];
    if (token_random(rnd, sizeof(rnd)) != 0) return -1;
    token_b64url(rnd, sizeof(rnd), text);
    memcpy(out, text, TOKEN_SECRET_LEN + 1);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    OPENSSL_cleanse(text, sizeof(text));
    return 0;
}

void token_mac_text(const uint8_t key[32], const char *msg, char out[TOKEN_SECRET_LEN + 1])
{
    uint8_t mac[32];
    unsigned int n = sizeof(mac);
    char text[48];
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg, strlen(msg), mac, &n);
    token_b64url(mac, sizeof(mac), text);
    memcpy(out, text, TOKEN_SECRET_LEN + 1);
}
