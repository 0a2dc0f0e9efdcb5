/* patexample: the smallest complete program on libpatclient, to read
 * before writing one's own (the README shows how to build and run it).
 * The platform key is read from a file, tokens from stdin: no secret ever
 * travels through argv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patclient.h"

static void usage_to(FILE *out)
{
    fprintf(out, "usage: patexample [--server HOST:PORT] --platform-key-file F COMMAND\n"
                 "  adduser USER_ID [member|manager|admin]   create or update a user\n"
                 "  create USER_ID NAME [DAYS]               new token for USER_ID (printed once)\n"
                 "  list USER_ID                             USER_ID's tokens\n"
                 "  revoke USER_ID TOKEN_ID | restore USER_ID TOKEN_ID | delete USER_ID TOKEN_ID\n"
                 "  verify [PATH]                            check the token read from stdin\n");
}

static void usage(void)
{
    usage_to(stderr);
    exit(2);
}

static const char *status_name(int s)
{
    return s == 1 ? "active" : s == 2 ? "revoked" : s == 3 ? "expired" : "?";
}

static int fail(const pat_status_t *st)
{
    fprintf(stderr, "error: %s (%s %u %s)\n", st->message, pat_code_name(st->code), st->http,
            st->reason);
    return 1;
}

int main(int argc, char **argv)
{
    const char *server = getenv("PATD_SERVER") ? getenv("PATD_SERVER") : PAT_DEFAULT_SERVER;
    const char *key_file = NULL;
    int i = 1;
    for (int k = 1; k < argc; k++) /* help first: it needs no server */
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            usage_to(stdout);
            return 0;
        }
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--platform-key-file") == 0)
            key_file = argv[i + 1];
        else
            usage();
    }
    if (i >= argc) usage();
    const char *cmd = argv[i++];
    char err[256];
    pat_client_t *c = pat_connect(server, 5000, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "error: %s\n", err);
        return 3;
    }
    char *key = NULL;
    if (strcmp(cmd, "verify") != 0) {
        if (key_file == NULL) usage();
        key = pat_read_secret_file(key_file, err, sizeof(err));
        if (key == NULL) {
            fprintf(stderr, "error: %s\n", err);
            return 2;
        }
    }
    pat_status_t st;
    int rc = 0;
    if (strcmp(cmd, "adduser") == 0 && i < argc) {
        Pat__V1__User u = PAT__V1__USER__INIT;
        Pat__V1__UpsertUserRequest req = PAT__V1__UPSERT_USER_REQUEST__INIT;
        u.user_id = argv[i];
        u.user_name = argv[i];
        const char *role = i + 1 < argc ? argv[i + 1] : "member";
        u.role = strcmp(role, "admin") == 0 ? 3 : strcmp(role, "manager") == 0 ? 2 : 1;
        req.user = &u;
        pat_set_platform(c, key, NULL);
        Pat__V1__User *out;
        pat_call(c, "UpsertUser", &req.base, &pat__v1__user__descriptor, (ProtobufCMessage **)&out,
                 &st);
        if (st.code)
            rc = fail(&st);
        else
            printf("user %s role=%d active=%d\n", out->user_id, out->role, out->active);
        if (out) protobuf_c_message_free_unpacked(&out->base, NULL);
    } else if (strcmp(cmd, "create") == 0 && i + 1 < argc) {
        Pat__V1__CreateTokenRequest req = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
        req.name = argv[i + 1];
        if (i + 2 < argc) {
            req.expiry_case = PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
            req.expires_in_days = atoi(argv[i + 2]);
        }
        pat_set_platform(c, key, argv[i]);
        Pat__V1__CreateTokenResponse *out;
        pat_call(c, "CreateToken", &req.base, &pat__v1__create_token_response__descriptor,
                 (ProtobufCMessage **)&out, &st);
        if (st.code) {
            rc = fail(&st);
        } else {
            fprintf(stderr, "token %llu '%s' created; it is shown once, store it now:\n",
                    (unsigned long long)out->token->id, out->token->name);
            printf("%s\n", out->bearer_token);
            protobuf_c_message_free_unpacked(&out->base, NULL);
        }
    } else if (strcmp(cmd, "list") == 0 && i < argc) {
        Pat__V1__ListTokensRequest req = PAT__V1__LIST_TOKENS_REQUEST__INIT;
        pat_set_platform(c, key, argv[i]);
        Pat__V1__ListTokensResponse *out;
        pat_call(c, "ListTokens", &req.base, &pat__v1__list_tokens_response__descriptor,
                 (ProtobufCMessage **)&out, &st);
        if (st.code) {
            rc = fail(&st);
        } else {
            printf("%-6s %-24s %-8s %s\n", "ID", "NAME", "STATUS", "LAST_USED_MS");
            for (size_t k = 0; k < out->n_tokens; k++)
                printf("%-6llu %-24s %-8s %lld\n", (unsigned long long)out->tokens[k]->id,
                       out->tokens[k]->name, status_name(out->tokens[k]->status),
                       (long long)out->tokens[k]->last_used);
            protobuf_c_message_free_unpacked(&out->base, NULL);
        }
    } else if ((strcmp(cmd, "revoke") == 0 || strcmp(cmd, "restore") == 0) && i + 1 < argc) {
        Pat__V1__UpdateTokenRequest req = PAT__V1__UPDATE_TOKEN_REQUEST__INIT;
        req.id = strtoull(argv[i + 1], NULL, 10);
        req.revoke = strcmp(cmd, "revoke") == 0;
        pat_set_platform(c, key, argv[i]);
        Pat__V1__TokenInfo *out;
        pat_call(c, "UpdateToken", &req.base, &pat__v1__token_info__descriptor,
                 (ProtobufCMessage **)&out, &st);
        if (st.code)
            rc = fail(&st);
        else
            printf("token %llu is %s\n", (unsigned long long)out->id, status_name(out->status));
        if (out) protobuf_c_message_free_unpacked(&out->base, NULL);
    } else if (strcmp(cmd, "delete") == 0 && i + 1 < argc) {
        Pat__V1__DeleteTokenRequest req = PAT__V1__DELETE_TOKEN_REQUEST__INIT;
        req.id = strtoull(argv[i + 1], NULL, 10);
        pat_set_platform(c, key, argv[i]);
        pat_call(c, "DeleteToken", &req.base, NULL, NULL, &st);
        if (st.code)
            rc = fail(&st);
        else
            printf("token %s deleted\n", argv[i + 1]);
    } else if (strcmp(cmd, "verify") == 0) {
        char tok[256];
        if (fgets(tok, sizeof(tok), stdin) == NULL) usage();
        tok[strcspn(tok, "\r\n")] = '\0';
        Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
        req.bearer_token = tok;
        req.path = i < argc ? argv[i] : "";
        Pat__V1__VerifyResponse *out;
        pat_call(c, "Verify", &req.base, &pat__v1__verify_response__descriptor,
                 (ProtobufCMessage **)&out, &st);
        explicit_bzero(tok, sizeof(tok));
        if (st.code) {
            rc = fail(&st);
        } else {
            printf("ok: user %s (role %d), token %llu '%s'\n", out->user->user_id, out->user->role,
                   (unsigned long long)out->token->id, out->token->name);
            protobuf_c_message_free_unpacked(&out->base, NULL);
        }
    } else {
        usage();
    }
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    pat_close(c);
    return rc;
}
