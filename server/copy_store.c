/* copy_store: copies one store into an empty one and compares them (see
 * copy_store.h). */
#include "copy_store.h"

#include <stdlib.h>
#include <string.h>

#include "store.h"

#define COPY_PAGE   500  /* users or tokens per read and per import */
#define COPY_EVENTS 5000 /* events per usage batch */

typedef struct {
    store_t *from, *to;
    FILE *out;
    unsigned long users, tokens, events, last_used, differences;
} copy_t;

static int copy_fail(const char *what, store_status_t s)
{
    fprintf(stderr, "patd copy-store: %s: %s\n", what, store_status_name(s));
    return 2;
}

/* Empty: no user, no token, no history. */
static int copy_target_empty(store_t *st)
{
    store_cursor_t start = {0}, next;
    store_user_t u;
    unsigned n = 0;
    int more = 0;
    if (store_users_list(st, 0, &start, 1, &u, &n, &more, &next) != STORE_OK || n) return 0;
    uint64_t id;
    return store_activity_next_id(st, 0, &id) == STORE_NOT_FOUND;
}

static int copy_users(copy_t *c)
{
    store_user_t *page = malloc(COPY_PAGE * sizeof(*page));
    if (page == NULL) abort();
    store_cursor_t after = {0}, next;
    int rc = 0;
    for (;;) {
        unsigned n = 0;
        int more = 0;
        store_status_t s = store_users_list(c->from, 0, &after, COPY_PAGE, page, &n, &more, &next);
        if (s == STORE_OK) s = store_import_users(c->to, page, n);
        if (s != STORE_OK) {
            rc = copy_fail("copying users", s);
            break;
        }
        c->users += n;
        if (!more) break;
        after = next;
    }
    free(page);
    return rc;
}

static int copy_tokens(copy_t *c)
{
    store_token_t *page = malloc(COPY_PAGE * sizeof(*page));
    if (page == NULL) abort();
    int rc = 0;
    for (int32_t kind = STORE_KIND_PERSONAL; rc == 0 && kind <= STORE_KIND_SERVICE; kind++) {
        store_cursor_t after = {0}, next;
        for (;;) {
            unsigned n = 0;
            int more = 0;
            store_status_t s =
                store_tokens_list(c->from, kind, NULL, &after, COPY_PAGE, page, &n, &more, &next);
            if (s == STORE_OK) s = store_import_tokens(c->to, page, n);
            /* Their last-used times, one batch per page. */
            store_usage_t *b = s == STORE_OK ? store_usage_begin(c->to) : NULL;
            for (unsigned i = 0; b && i < n && s == STORE_OK; i++) {
                int64_t ms = 0;
                s = store_last_used_get(c->from, page[i].id, &ms);
                if (s == STORE_OK && ms) {
                    store_usage_last_used(b, page[i].id, ms);
                    c->last_used++;
                }
            }
            if (b) {
                store_status_t cs = store_usage_commit(b);
                if (s == STORE_OK) s = cs;
            }
            if (s != STORE_OK) {
                rc = copy_fail("copying tokens", s);
                break;
            }
            c->tokens += n;
            if (!more) break;
            after = next;
        }
    }
    free(page);
    return rc;
}

/* A token's whole history, newest first; *out is malloc'd. */
static store_status_t copy_history(store_t *st, uint64_t id, store_event_t **out, unsigned *n)
{
    unsigned cap = 256;
    for (;;) {
        *out = malloc(cap * sizeof(**out));
        if (*out == NULL) abort();
        store_status_t s = store_activity_list(st, id, cap, *out, n);
        if (s != STORE_OK || *n < cap) return s;
        free(*out);
        cap *= 4;
    }
}

static int copy_activity(copy_t *c)
{
    uint64_t id = 0;
    store_usage_t *b = store_usage_begin(c->to);
    unsigned in_batch = 0;
    store_status_t s;
    while ((s = store_activity_next_id(c->from, id, &id)) == STORE_OK) {
        store_event_t *ev;
        unsigned n = 0;
        if ((s = copy_history(c->from, id, &ev, &n)) != STORE_OK) {
            free(ev);
            break;
        }
        for (unsigned i = 0; i < n; i++)
            store_usage_event(b, id, &ev[i]);
        free(ev);
        c->events += n;
        if ((in_batch += n) >= COPY_EVENTS) {
            if ((s = store_usage_commit(b)) != STORE_OK) {
                b = NULL;
                break;
            }
            b = store_usage_begin(c->to);
            in_batch = 0;
        }
    }
    if (b) {
        store_status_t cs = store_usage_commit(b);
        if (s == STORE_NOT_FOUND) s = cs;
    }
    return s == STORE_OK || s == STORE_NOT_FOUND ? 0 : copy_fail("copying activity", s);
}

/* ---------------------------------------------------------------- comparing */

static void copy_differs(copy_t *c, const char *what, const char *id)
{
    if (c->differences++ < 20) fprintf(stderr, "patd copy-store: %s differs: %s\n", what, id);
}

static int copy_same_user(const store_user_t *a, const store_user_t *b)
{
    return strcmp(a->user_id, b->user_id) == 0 && strcmp(a->user_name, b->user_name) == 0 &&
           strcmp(a->email, b->email) == 0 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->created_by, b->created_by) == 0 && a->role == b->role &&
           a->user_type == b->user_type && a->active == b->active && a->created == b->created;
}

static int copy_same_token(const store_token_t *a, const store_token_t *b)
{
    return a->id == b->id && memcmp(a->hash, b->hash, STORE_HASH_BYTES) == 0 &&
           strcmp(a->name, b->name) == 0 && strcmp(a->owner_id, b->owner_id) == 0 &&
           strcmp(a->created_by, b->created_by) == 0 && a->kind == b->kind && a->scim == b->scim &&
           a->active == b->active && a->created == b->created && a->expiration == b->expiration;
}

static int copy_same_event(const store_event_t *a, const store_event_t *b)
{
    return a->seq == b->seq && a->kind == b->kind && a->time == b->time && a->count == b->count &&
           a->first_time == b->first_time && strcmp(a->path, b->path) == 0 &&
           strcmp(a->client_ip, b->client_ip) == 0 && strcmp(a->actor, b->actor) == 0 &&
           strcmp(a->owner_id, b->owner_id) == 0 && a->token_kind == b->token_kind;
}

static int copy_compare_users(copy_t *c)
{
    store_user_t *page = malloc(COPY_PAGE * sizeof(*page));
    if (page == NULL) abort();
    store_cursor_t after = {0}, next;
    unsigned long seen = 0;
    store_status_t s;
    for (;;) {
        unsigned n = 0;
        int more = 0;
        if ((s = store_users_list(c->from, 0, &after, COPY_PAGE, page, &n, &more, &next)) !=
            STORE_OK)
            break;
        for (unsigned i = 0; i < n; i++) {
            store_user_t there;
            if (store_user_get(c->to, page[i].user_id, &there) != STORE_OK ||
                !copy_same_user(&page[i], &there))
                copy_differs(c, "user", page[i].user_id);
        }
        seen += n;
        if (!more) break;
        after = next;
    }
    free(page);
    if (s != STORE_OK) return copy_fail("comparing users", s);
    if (seen != c->users) copy_differs(c, "number of users", "the source changed during the copy");
    return 0;
}

static int copy_compare_tokens(copy_t *c)
{
    store_token_t *page = malloc(COPY_PAGE * sizeof(*page));
    if (page == NULL) abort();
    store_status_t s = STORE_OK;
    unsigned long seen = 0;
    for (int32_t kind = STORE_KIND_PERSONAL; s == STORE_OK && kind <= STORE_KIND_SERVICE; kind++) {
        store_cursor_t after = {0}, next;
        for (;;) {
            unsigned n = 0;
            int more = 0;
            if ((s = store_tokens_list(c->from, kind, NULL, &after, COPY_PAGE, page, &n, &more,
                                       &next)) != STORE_OK)
                break;
            for (unsigned i = 0; i < n; i++) {
                store_token_t by_id, by_hash;
                int64_t a = 0, b = 0;
                char id[24];
                snprintf(id, sizeof(id), "%llu", (unsigned long long)page[i].id);
                if (store_token_get(c->to, page[i].id, &by_id) != STORE_OK ||
                    !copy_same_token(&page[i], &by_id) ||
                    store_token_get_by_hash(c->to, page[i].hash, &by_hash) != STORE_OK ||
                    by_hash.id != page[i].id)
                    copy_differs(c, "token", id);
                if (store_last_used_get(c->from, page[i].id, &a) != STORE_OK ||
                    store_last_used_get(c->to, page[i].id, &b) != STORE_OK || a != b)
                    copy_differs(c, "last-used time of token", id);
            }
            seen += n;
            if (!more) break;
            after = next;
        }
    }
    free(page);
    if (s != STORE_OK) return copy_fail("comparing tokens", s);
    if (seen != c->tokens)
        copy_differs(c, "number of tokens", "the source changed during the copy");
    return 0;
}

static int copy_compare_activity(copy_t *c)
{
    uint64_t id = 0;
    unsigned long seen = 0;
    store_status_t s;
    while ((s = store_activity_next_id(c->from, id, &id)) == STORE_OK) {
        store_event_t *a = NULL, *b = NULL;
        unsigned na = 0, nb = 0;
        char what[24];
        snprintf(what, sizeof(what), "%llu", (unsigned long long)id);
        s = copy_history(c->from, id, &a, &na);
        if (s == STORE_OK) s = copy_history(c->to, id, &b, &nb);
        int same = s == STORE_OK && na == nb;
        for (unsigned i = 0; same && i < na; i++)
            same = copy_same_event(&a[i], &b[i]);
        if (s == STORE_OK && !same) copy_differs(c, "history of token", what);
        seen += na;
        free(a);
        free(b);
        if (s != STORE_OK) break;
    }
    if (s != STORE_NOT_FOUND) return copy_fail("comparing activity", s);
    if (seen != c->events)
        copy_differs(c, "number of events", "the source changed during the copy");
    return 0;
}

/* ---------------------------------------------------------------- the tool */

int copy_store(const char *from, const char *to, FILE *out)
{
    if (from == NULL || to == NULL || !from[0] || !to[0]) {
        fprintf(stderr, "patd copy-store: say --from URL and --to URL\n");
        return 2;
    }
    copy_t c = {.out = out};
    char *err = NULL;
    store_options_t src_opt = {.must_exist = 1, .shared = 1};
    if ((c.from = store_open(from, &src_opt, &err)) == NULL) {
        fprintf(stderr, "patd copy-store: --from: %s\n", err ? err : "cannot open");
        free(err);
        return 2;
    }
    store_options_t dst_opt = {.bulk = 1};
    if ((c.to = store_open(to, &dst_opt, &err)) == NULL) {
        fprintf(stderr, "patd copy-store: --to: %s\n", err ? err : "cannot open");
        free(err);
        store_close(c.from);
        return 2;
    }
    int rc = 0;
    if (!copy_target_empty(c.to)) {
        fprintf(stderr,
                "patd copy-store: --to %s is not empty: copy-store only fills an empty "
                "store (nothing was written)\n",
                store_url(c.to));
        rc = 2;
    }
    if (rc == 0) rc = copy_users(&c);
    if (rc == 0) rc = copy_tokens(&c);
    if (rc == 0) rc = copy_activity(&c);
    if (rc == 0) {
        fprintf(out,
                "patd copy-store: copied %lu users, %lu tokens, %lu last-used times and %lu "
                "events from %s to %s\n",
                c.users, c.tokens, c.last_used, c.events, store_url(c.from), store_url(c.to));
        store_compact(c.to); /* PostgreSQL: fresh statistics for the planner */
    }
    if (rc == 0) rc = copy_compare_users(&c);
    if (rc == 0) rc = copy_compare_tokens(&c);
    if (rc == 0) rc = copy_compare_activity(&c);
    long p_from = -1, p_to = -1;
    if (rc == 0) {
        p_from = store_check(c.from, stderr);
        p_to = store_check(c.to, stderr);
        if (p_from < 0 || p_to < 0) rc = 2;
    }
    store_close(c.to); /* durable from here */
    store_close(c.from);
    if (rc != 0) return rc;
    if (c.differences || p_from || p_to) {
        fprintf(out,
                "patd copy-store: %lu difference(s), %ld problem(s) in the source, %ld in the "
                "target\n",
                c.differences, p_from, p_to);
        return 1;
    }
    fprintf(out, "patd copy-store: both stores agree, and both check clean\n");
    return 0;
}
