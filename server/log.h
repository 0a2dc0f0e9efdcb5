/* log: one line per event to stderr, with a level and a UTC timestamp.
 *
 * Thread-safe (one write(2) per line). Callers must never pass a secret:
 * tokens and the platform key are not logged anywhere, by design, and the
 * security test greps a full run's log for every secret it created. */
#ifndef PAT_LOG_H
#define PAT_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_set_level(log_level_t level);
/* Parses "debug", "info", "warn", "error"; returns -1 if unknown. */
int log_parse_level(const char *s, log_level_t *out);
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 if a line at this level would be written: lets a caller skip the work
 * of preparing one (a timestamp, a latency) that would be dropped. */
int log_enabled(log_level_t level);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
