/* test_pbjson: the one JSON form of the messages (proto/pbjson.h): names,
 * times, enums, presence, and the strict input that refuses what the
 * message does not have. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch.h"
#include "pat/v1/pat.pb-c.h"
#include "pbjson.h"

static disp_arena_t *arena;

static int setup(void **state)
{
    (void)state;
    arena = disp_arena_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    disp_arena_free(arena);
    return 0;
}

static ProtobufCAllocator *al(void)
{
    return disp_arena_allocator(arena);
}

/* Parses text into a CreateTokenRequest; the error in err. */
static int parse_create(const char *text, Pat__V1__CreateTokenRequest *r, char *err)
{
    pat__v1__create_token_request__init(r);
    return pbjson_parse(text, strlen(text), &r->base, al(), NULL, err, PBJSON_ERR_MAX);
}

static void test_R20_token_info_fields_times_enums(void **state)
{
    (void)state;
    Pat__V1__User u = PAT__V1__USER__INIT;
    u.user_id = "auth0|abc";
    u.role = PAT__V1__ROLE__ROLE_ADMIN;
    u.user_type = PAT__V1__USER_TYPE__USER_TYPE_HUMAN;
    u.active = 1;
    u.created = 1764667800123; /* 2025-12-02T09:30:00.123Z */
    Pat__V1__TokenInfo t = PAT__V1__TOKEN_INFO__INIT;
    t.id = 42;
    t.name = "ci \"runner\"";
    t.created = 1764667800123;
    t.expiration = 0;
    t.last_used = 0;
    t.status = PAT__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED;
    t.kind = PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL;
    t.user = &u;
    char *s = pbjson_dumps(&t.base, 0);
    assert_string_equal(
        s, "{\"id\":42,\"name\":\"ci \\\"runner\\\"\",\"created\":\"2025-12-02T09:30:00.123Z\","
           "\"expiration\":null,\"last_used\":null,\"active\":false,\"status\":\"expired\","
           "\"kind\":\"personal\",\"scim_endpoints_only\":false,\"user\":{\"user_id\":"
           "\"auth0|abc\",\"user_name\":\"\",\"email\":\"\",\"name\":\"\",\"role\":\"admin\","
           "\"user_type\":\"human\",\"active\":true,\"created\":\"2025-12-02T09:30:00.123Z\","
           "\"created_by\":\"\"},\"created_by\":\"\"}");
    free(s);
}

static void test_unspecified_enum_left_out_and_unset_message_null(void **state)
{
    (void)state;
    Pat__V1__TokenInfo t = PAT__V1__TOKEN_INFO__INIT;
    char *s = pbjson_dumps(&t.base, 0);
    assert_null(strstr(s, "\"status\""));
    assert_null(strstr(s, "\"kind\""));
    assert_non_null(strstr(s, "\"user\":null"));
    free(s);
    Pat__V1__ListTokensResponse l = PAT__V1__LIST_TOKENS_RESPONSE__INIT;
    s = pbjson_dumps(&l.base, 0);
    assert_string_equal(s, "{\"tokens\":[],\"next_page_token\":\"\"}");
    free(s);
}

static void test_enum_words(void **state)
{
    (void)state;
    char w[64];
    pbjson_enum_word(&pat__v1__activity_kind__descriptor, 1, w, sizeof(w));
    assert_string_equal(w, "used");
    pbjson_enum_word(&pat__v1__serving_status__descriptor, 2, w, sizeof(w));
    assert_string_equal(w, "draining");
    pbjson_enum_word(&pat__v1__code__descriptor, 16, w, sizeof(w));
    assert_string_equal(w, "unauthenticated");
    pbjson_enum_word(&pat__v1__role__descriptor, 77, w, sizeof(w));
    assert_string_equal(w, "77");
}

static void test_R7_expiry_presence(void **state)
{
    (void)state;
    Pat__V1__CreateTokenRequest r;
    char err[PBJSON_ERR_MAX];
    assert_int_equal(parse_create("{\"name\":\"a\",\"expires_in_days\":30}", &r, err), 0);
    assert_int_equal(r.expiry_case, PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS);
    assert_int_equal(r.expires_in_days, 30);
    assert_int_equal(parse_create("{\"name\":\"a\",\"expires_in_days\":null}", &r, err), 0);
    assert_int_equal(r.expiry_case, PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY__NOT_SET);
    assert_int_equal(parse_create("{\"name\":\"a\"}", &r, err), 0);
    assert_int_equal(r.expiry_case, PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY__NOT_SET);
    assert_string_equal(r.name, "a");
    /* Output: a oneof member that is not chosen is null. */
    char *s = pbjson_dumps(&r.base, 0);
    assert_non_null(strstr(s, "\"expires_in_days\":null"));
    free(s);
}

static void test_unknown_field_is_named(void **state)
{
    (void)state;
    Pat__V1__CreateTokenRequest r;
    char err[PBJSON_ERR_MAX];
    assert_int_equal(parse_create("{\"name\":\"a\",\"expires_in_day\":30}", &r, err), -1);
    assert_non_null(strstr(err, "unknown field 'expires_in_day'"));
    assert_non_null(strstr(err, "expires_in_days"));
}

static void test_wrong_types_and_ranges(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"name\":5}",
        "{\"name\":\"a\",\"expires_in_days\":\"30\"}",
        "{\"name\":\"a\",\"expires_in_days\":2147483648}",
        "{\"name\":\"a\",\"expires_in_days\":1.5}",
        "{\"name\":\"a\",\"scim_endpoints_only\":1}",
        "{\"name\":\"a\",\"kind\":\"SERVICE\"}",
        "{\"name\":\"a\",\"kind\":\"unspecified\"}",
        "{\"name\":\"a\",\"kind\":2}",
        "{\"name\":\"a\",\"name\":\"b\"}",
        "{\"name\":\"a\"",
        "[1]",
        "{\"name\":\"a\\u0000b\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Pat__V1__CreateTokenRequest r;
        char err[PBJSON_ERR_MAX] = "";
        if (parse_create(bad[i], &r, err) != -1) fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 0);
    }
    Pat__V1__CreateTokenRequest r;
    char err[PBJSON_ERR_MAX];
    assert_int_equal(parse_create("{\"name\":\"a\",", &r, err), -1);
    assert_non_null(strstr(err, "invalid JSON at byte"));
    assert_int_equal(parse_create("{\"name\":\"a\",\"kind\":\"service\"}", &r, err), 0);
    assert_int_equal(r.kind, PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE);
}

static void test_repeated_and_nested(void **state)
{
    (void)state;
    Pat__V1__RevokeCredentialsRequest r = PAT__V1__REVOKE_CREDENTIALS_REQUEST__INIT;
    char err[PBJSON_ERR_MAX];
    const char *ok = "{\"credentials\":[\"a\",\"b\"]}";
    assert_int_equal(pbjson_parse(ok, strlen(ok), &r.base, al(), NULL, err, sizeof(err)), 0);
    assert_int_equal(r.n_credentials, 2);
    assert_string_equal(r.credentials[1], "b");
    const char *bad = "{\"credentials\":[\"a\",null]}";
    pat__v1__revoke_credentials_request__init(&r);
    assert_int_equal(pbjson_parse(bad, strlen(bad), &r.base, al(), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "credentials[1]"));

    Pat__V1__UpsertUserRequest u = PAT__V1__UPSERT_USER_REQUEST__INIT;
    const char *nested = "{\"user\":{\"user_id\":\"x\",\"role\":\"manager\","
                         "\"created\":\"2026-01-02T03:04:05.678+01:00\"}}";
    assert_int_equal(pbjson_parse(nested, strlen(nested), &u.base, al(), NULL, err, sizeof(err)),
                     0);
    assert_string_equal(u.user->user_id, "x");
    assert_int_equal(u.user->role, PAT__V1__ROLE__ROLE_MANAGER);
    assert_int_equal(u.user->created, 1767319445678); /* 02:04:05.678Z */
    const char *typo = "{\"user\":{\"userid\":\"x\"}}";
    pat__v1__upsert_user_request__init(&u);
    assert_int_equal(pbjson_parse(typo, strlen(typo), &u.base, al(), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'user.userid'"));
}

static void test_omit_fields_given_by_the_path(void **state)
{
    (void)state;
    Pat__V1__UpdateTokenRequest r = PAT__V1__UPDATE_TOKEN_REQUEST__INIT;
    static const char *const omit[] = {"id", NULL};
    char err[PBJSON_ERR_MAX];
    const char *t = "{\"id\":3,\"revoke\":true}";
    assert_int_equal(pbjson_parse(t, strlen(t), &r.base, al(), omit, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'id' comes from the URL's path"));
}

static void test_times(void **state)
{
    (void)state;
    char t[PBJSON_TIME_LEN + 1];
    pbjson_time_text(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    pbjson_time_text(1796400000999, t);
    assert_string_equal(t, "2026-12-04T16:00:00.999Z");
    int64_t ms;
    assert_int_equal(pbjson_time_parse("2026-12-04T16:00:00.999Z", &ms), 0);
    assert_int_equal(ms, 1796400000999);
    assert_int_equal(pbjson_time_parse("2026-12-04T16:00:00Z", &ms), 0);
    assert_int_equal(ms, 1796400000000);
    assert_int_equal(pbjson_time_parse("2026-12-04T17:30:00.5+01:30", &ms), 0);
    assert_int_equal(ms, 1796400000500);
    static const char *const bad[] = {"2026-02-31T00:00:00Z",
                                      "2026-12-04 16:00:00Z",
                                      "2026-12-04T16:00:00",
                                      "2026-12-04T16:00:00.Z",
                                      "2026-13-01T00:00:00Z",
                                      "2026-12-04T16:00:00Zjunk",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pbjson_time_parse(bad[i], &ms) == 0) fail_msg("accepted '%s'", bad[i]);
}

static void test_set_text_from_the_url(void **state)
{
    (void)state;
    Pat__V1__ListTokensRequest r = PAT__V1__LIST_TOKENS_REQUEST__INIT;
    const ProtobufCMessageDescriptor *d = r.base.descriptor;
    char err[PBJSON_ERR_MAX];
    const ProtobufCFieldDescriptor *ps =
        protobuf_c_message_descriptor_get_field_by_name(d, "page_size");
    const ProtobufCFieldDescriptor *k = protobuf_c_message_descriptor_get_field_by_name(d, "kind");
    assert_int_equal(pbjson_set_text(&r.base, ps, "25", al(), err, sizeof(err)), 0);
    assert_int_equal(r.page_size, 25);
    static const char *const bad[] = {"", "+1", " 1", "0x10", "-1", "4294967296", "1e3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pbjson_set_text(&r.base, ps, bad[i], al(), err, sizeof(err)) == 0)
            fail_msg("page_size accepted '%s'", bad[i]);
    assert_int_equal(pbjson_set_text(&r.base, k, "service", al(), err, sizeof(err)), 0);
    assert_int_equal(r.kind, PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE);
    assert_int_equal(pbjson_set_text(&r.base, k, "Service", al(), err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R20_token_info_fields_times_enums),
        cmocka_unit_test(test_unspecified_enum_left_out_and_unset_message_null),
        cmocka_unit_test(test_enum_words),
        cmocka_unit_test(test_R7_expiry_presence),
        cmocka_unit_test(test_unknown_field_is_named),
        cmocka_unit_test(test_wrong_types_and_ranges),
        cmocka_unit_test(test_repeated_and_nested),
        cmocka_unit_test(test_omit_fields_given_by_the_path),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_set_text_from_the_url),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
