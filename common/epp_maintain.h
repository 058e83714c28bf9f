/* epp_maintain: the partition and retention maintenance of public.events (sql/041, sql/040),
 * shared by epp-consumer (a background thread, every MAINTENANCE_INTERVAL_S) and
 * `epp-admin retention [--dry-run]`.
 *
 * The SQL decides what to do: epp_maintenance_plan() lists steps (create a day partition, drop
 * one past EVENTS_RETENTION, purge old rows of events_default, purge rollups past
 * ROLLUP_RETENTION) and epp_maintenance_apply() does one. This module runs a plan step by step,
 * each step in its own transaction under lock_timeout, so that no lock on public.events is held
 * for long and a step that cannot get its lock is retried instead of queueing every reader
 * behind it. One run at a time per database: a run holds the session advisory lock
 * EPP_MAINTAIN_LOCK_KEY. docs/scaling.md explains the choices.
 *
 * Threads: no global state; a connection belongs to the calling thread. */
#ifndef EPP_MAINTAIN_H
#define EPP_MAINTAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "epp_pg.h"

/* The options every program that maintains partitions takes, declared once (STYLE 14): a
 * configuration struct T with fields `char *events_retention, *rollup_retention` and
 * `int64_t partitions_ahead` includes them in its table. */
/* clang-format off */
#define EPP_MAINTAIN_CONF_OPTS(T)                                                                  \
    EPP_CONF_STR("events-retention", "EVENTS_RETENTION", NULL, T, events_retention,                \
                 "Keep raw events this long (e.g. 90d; units s m h d w), then drop their day "    \
                 "partitions whole; unset: keep everything"),                                      \
    EPP_CONF_STR("rollup-retention", "ROLLUP_RETENTION", NULL, T, rollup_retention,                \
                 "Keep rollups (minute, hour, day, user bitmaps) this long; unset: keep everything"), \
    EPP_CONF_INT("events-partitions-ahead", "EVENTS_PARTITIONS_AHEAD", "7", 1, 366, T,             \
                 partitions_ahead, "Day partitions of public.events created ahead of today")
/* clang-format on */

/* How long a maintenance statement waits for its lock. Short on purpose: while a DROP or an
 * ATTACH waits for ACCESS EXCLUSIVE on public.events or events_default, every reader and writer
 * that comes after it queues behind it; a step that cannot get its lock this fast is tried again
 * (twice, half a second apart) and then left for the next run. */
#define EPP_MAINTAIN_LOCK_TIMEOUT_MS 200

/* The advisory lock key of a maintenance run ("eppmaint"). */
#define EPP_MAINTAIN_LOCK_KEY 0x657070686d61696eLL

typedef struct {
    int64_t ahead_days;      /* day partitions created ahead of today */
    int64_t events_keep_us;  /* raw events kept this long; 0: forever */
    int64_t rollups_keep_us; /* rollups kept this long; 0: forever */
} epp_maintain_opts_t;

typedef struct {
    char action[16]; /* create, drop, purge-default, purge-rollups */
    char object[64]; /* the partition or table */
    int64_t lo_us;   /* the range the step covers, [lo, hi) */
    int64_t hi_us;
    int64_t est_rows; /* rows it moves or removes (an estimate for drop); -1 unknown */
} epp_maintain_step_t;

/* Fills o from the option values (events and rollups may be NULL or "": keep forever).
 * EPP_EINVAL with a message naming the option in err when a duration is malformed. */
int epp_maintain_opts_init(epp_maintain_opts_t *o, const char *events, const char *rollups,
                           int64_t ahead_days, char *err, size_t errsz);

/* Parses a duration "N<unit>", unit one of s m h d w, N a positive integer, into microseconds.
 * 0 or EPP_EINVAL. */
int epp_maintain_parse_duration(const char *s, int64_t *us);

/* What a run would do now. On 0, *steps (caller frees) holds *n steps in execution order. */
int epp_maintain_plan(PGconn *conn, const epp_maintain_opts_t *o, epp_maintain_step_t **steps,
                      size_t *n, epp_pg_error_t *pe);

/* Called after each step of epp_maintain_run: rc 0 (then rows is what the step moved or
 * removed, -1 when another run had done it already) or the step's error in pe. */
typedef void (*epp_maintain_report_fn)(void *ud, const epp_maintain_step_t *s, int rc, int64_t rows,
                                       const epp_pg_error_t *pe);

/* One maintenance run: takes the advisory lock (without waiting: EPP_EAGAIN when another run
 * holds it), plans, and applies every step in its own transaction with lock_timeout
 * EPP_MAINTAIN_LOCK_TIMEOUT_MS, trying a step that timed out on its lock up to three times. A
 * failed step is reported and the run goes on with the next one (the next run retries it). *stop
 * (may be NULL) is checked between steps. Returns 0 when every step succeeded, the first step's
 * error otherwise (EPP_EIO when the connection was lost: the caller reconnects). *done (may be
 * NULL) receives how many steps succeeded. */
int epp_maintain_run(PGconn *conn, const epp_maintain_opts_t *o, const volatile sig_atomic_t *stop,
                     epp_maintain_report_fn report, void *ud, size_t *done, epp_pg_error_t *pe);

#endif
