/* copy_store: `patd copy-store --from URL --to URL`, moving a store to
 * another backend (one node's RocksDB to PostgreSQL): users, tokens with
 * their ids and hashes (the secrets are never known), last-used times and
 * activity, including the history of deleted tokens.
 *
 * DESIGN. Only the store interface is used, so any backend copies to any
 * other. The target must be empty (nothing is merged or overwritten); it
 * is written in batches opened in bulk mode and made durable at close.
 * Afterwards both stores are checked (store_check) and compared record by
 * record: every user, every token by its id and by its hash, every
 * last-used time and every token's history. Runs with patd stopped (a
 * RocksDB source is locked by its server; a PostgreSQL target is taken
 * with the serve lock, so no patd can serve it meanwhile). */
#ifndef PAT_COPY_STORE_H
#define PAT_COPY_STORE_H

#include <stdio.h>

/* Copies, then verifies. Progress and the summary go to out, errors to
 * stderr. Returns the exit code: 0 copied and verified, 1 copied but the
 * comparison found differences, 2 nothing or not all copied. */
int copy_store(const char *from, const char *to, FILE *out);

#endif
