/* err: lookups into the outcome table declared in err.h. */
#include "err.h"

static const struct {
    const char *name;
    uint32_t code;
    uint32_t http;
    const char *reason;
} pat_err_table[] = {
#define PAT_ERR_ROW(name, code, http, reason) {#name, code, http, reason},
    PAT_ERR_MAP(PAT_ERR_ROW)
#undef PAT_ERR_ROW
};

static unsigned pat_err_index(pat_err_t e)
{
    return (unsigned)e < PAT_E__COUNT ? (unsigned)e : (unsigned)PAT_E_INTERNAL;
}

uint32_t pat_err_code(pat_err_t e)
{
    return pat_err_table[pat_err_index(e)].code;
}

uint32_t pat_err_http(pat_err_t e)
{
    return pat_err_table[pat_err_index(e)].http;
}

const char *pat_err_reason(pat_err_t e)
{
    return pat_err_table[pat_err_index(e)].reason;
}

const char *pat_err_name(pat_err_t e)
{
    return pat_err_table[pat_err_index(e)].name;
}
