/* usage: last-used times and recent activity of tokens, kept in memory and
 * written to the store in batches (R15, R22).
 *
 * DESIGN. A successful Verify must not cost a storage write, let alone a
 * synced one, nor even a lookup in a table of every token used since
 * start (a cache miss or three per Verify when tokens are many). So
 * usage_record() appends the use to its thread's buffer, under a mutex
 * only a drain also takes, and returns.
 *
 * A drain thread applies the buffers to per-token entries kept under
 * USAGE_STRIPES mutexes, every USAGE_DRAIN_MS and as soon as a buffer holds
 * USAGE_DRAIN_BYTES (a few hundred uses). It is SCHED_IDLE, so it only
 * takes a core nothing else wants: at normal priority its wake-ups
 * preempted the network thread or the clients, and hot Verify's p99 rose
 * from 1.0 to 1.6 ms. A reader drains first (usage_last_used,
 * usage_flush), so what it sees includes every use recorded before it
 * asked. A buffer that reaches USAGE_BUF_BYTES (the drain is starved)
 * makes its thread apply the use itself.
 *
 * usage_flush() moves what changed into one durable store batch; the flusher
 * thread runs it every USAGE_FLUSH_MS at normal priority (the lag promised
 * below must hold on a busy machine), and it runs once more at shutdown. A
 * token's first use since start is written by the next flush; after that, a
 * token's writes are at least USAGE_PERSIST_MS apart, its uses coalescing
 * in memory meanwhile, so a token verified all day costs a write every ten
 * seconds, not every second (the list reads memory, so it shows every use
 * at once). Only its second write comes sooner, by up to half that interval
 * and an amount fixed per token, so that tokens first used together are not
 * all written by the same flush ever after. A flush looks only at entries
 * that changed (each stripe keeps a list of them), in key order, and takes
 * a stripe mutex for one entry at a time, so a reader that waits on it
 * waits for one entry, never for a walk or an allocation. After a crash,
 * last-used times and use events lag by at most USAGE_PERSIST_MS plus one
 * flush interval (Health reports it as last_used_lag_ms); a token's first
 * use, by one flush interval.
 *
 * Uses are coalesced: between two writes of a token, its uses with the
 * same path and client are one activity row with a count and first/last
 * time, and at most USAGE_DISTINCT distinct (path, client) pairs are kept
 * per token; further ones are counted in a single row with path "*". So a
 * token verified 100000 times a second writes a handful of rows every
 * 10 s, not 100000 a second, and its USAGE_KEEP newest rows reach back
 * at least 1000 s. Each token keeps its newest USAGE_KEEP rows;
 * older ones are deleted. Trims are maintenance, at most
 * USAGE_TRIMS_PER_FLUSH tokens per flush: a storm of new tokens delays
 * them rather than slowing serving; the rest wait in a queue of ids and
 * catch up afterwards.
 *
 * Deleted tokens are remembered (a flag on the entry) so that a Verify that
 * raced with the delete cannot bring rows of the deleted token back.
 *
 * Memory is bounded by the tokens used recently, not by every token used
 * since start: an entry that has been clean (written, nothing pending) for
 * USAGE_PERSIST_MS is dropped by the flush, a deleted token's after the
 * same interval; readers then find its last-used time in the store.
 * All functions are thread-safe. */
#ifndef PAT_USAGE_H
#define PAT_USAGE_H

#include <stdint.h>

#include "store.h"

#define USAGE_STRIPES         16
#define USAGE_FLUSH_MS        1000
#define USAGE_DRAIN_MS        10             /* buffered uses applied at least this often */
#define USAGE_DRAIN_BYTES     16384          /* and as soon as a buffer holds this much */
#define USAGE_BUF_BYTES       (4u << 20)     /* per recording thread */
#define USAGE_PERSIST_MS      10000          /* a token written this recently waits */
#define USAGE_KEEP            100            /* activity rows kept per token */
#define USAGE_DISTINCT        16             /* (path, client) rows per token per write */
#define USAGE_TRIM_EVERY      20             /* rows written between trims of one token */
#define USAGE_TRIMS_PER_FLUSH 256            /* trims done per flush, at most */
#define USAGE_PATH_MAX        STORE_PATH_MAX /* bytes of path kept per use */
#define USAGE_CLIENT_IP_MAX   STORE_ADDR_MAX

typedef struct usage usage_t;

usage_t *usage_new(store_t *st);
/* Frees memory only; call usage_stop() and usage_flush() first to keep
 * what is pending. */
void usage_free(usage_t *u);

/* Starts the flusher thread (flush every USAGE_FLUSH_MS, normal priority)
 * and the drain thread (SCHED_IDLE); 0 or -1. */
int usage_start(usage_t *u);
/* Stops and joins them (a flush in progress completes). Idempotent. */
void usage_stop(usage_t *u);

/* Records one successful use. path and client_ip may be NULL; they are
 * copied (truncated to the limits above). */
void usage_record(usage_t *u, uint64_t id, int64_t now, const char *path, const char *client_ip);

/* Applies every buffered use to the in-memory entries (the drain thread does it
 * every USAGE_DRAIN_MS; readers below do it first). */
void usage_drain(usage_t *u);

/* The newest last-used time known in memory, 0 if none (then ask the store).
 * Drains first, so it includes every use recorded before the call. */
int64_t usage_last_used(usage_t *u, uint64_t id);
/* The same without the drain, for a reader of many tokens that drained
 * once before them: under load, uses keep arriving, and a drain per token
 * of a page would repeat the drain (and its locks) for each. */
int64_t usage_last_used_applied(usage_t *u, uint64_t id);

/* Entries held in memory (tokens used recently, and deleted ones for a
 * while). */
size_t usage_entries(usage_t *u);

/* A deleted token's history stays readable by its owner for retention_ms
 * after its last row (the delete), then goes (0: kept for ever). The
 * flusher runs the purge every USAGE_PURGE_EVERY_MS, USAGE_PURGE_BUDGET
 * tokens at a time, so that a store of a million tokens is swept in parts
 * that never hold up a flush for long. */
#define USAGE_PURGE_EVERY_MS 60000
#define USAGE_PURGE_BUDGET   1000
void usage_set_retention(usage_t *u, int64_t retention_ms);
/* One round of the purge at wall time now_ms: looks at up to budget tokens
 * with a history, from where the last round stopped, and deletes the rows
 * of those that no longer exist and whose newest row is older than the
 * retention. Returns how many tokens' histories went, or -1 on a store
 * error. */
int usage_purge_deleted(usage_t *u, int64_t now_ms, unsigned budget);

/* Notes rows written to the activity column family outside usage (lifecycle
 * events), so that trimming takes them into account. */
void usage_note_rows(usage_t *u, uint64_t id, unsigned rows);

/* Writes what is pending in one synced batch, then trims tokens that are
 * due. Unless force, a token written less than USAGE_PERSIST_MS before
 * now_ms (monotonic; for its second write, up to half that less) waits, its
 * uses coalescing meanwhile. Returns 0, or -1 if the store refused (what
 * was pending is kept and retried on the next flush). Flushes never run
 * concurrently. */
int usage_flush_at(usage_t *u, int64_t now_ms, int force);
/* Writes everything pending now: usage_flush_at(u, now, 1). */
int usage_flush(usage_t *u);

/* Deleting tokens: usage_hold() waits for a running flush and holds off
 * the next; the caller commits its delete, calls usage_forget() for each
 * deleted id (drops what is pending and ignores later uses), then
 * usage_release(). Holding across the commit is what keeps a flush from
 * writing rows of a token after its delete. */
void usage_hold(usage_t *u);
void usage_forget(usage_t *u, uint64_t id);
void usage_release(usage_t *u);

#endif
