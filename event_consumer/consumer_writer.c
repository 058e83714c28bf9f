#include "consumer_writer.h"

#include "consumer_rows.h"
#include "epp_uidcache.h"
#include "consumer_users.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_migrate.h"
#include "epp_pg.h"
#include "epp_time.h"
#include "epp_users.h"

typedef enum {
    MODE_FAST,    /* COPY straight into public.events */
    MODE_SLOW,    /* COPY into staging, INSERT ... ON CONFLICT DO NOTHING */
    MODE_ISOLATE, /* one INSERT per row under a savepoint, to find rejected values */
} write_mode_t;

/* try_write outcomes beyond 0 and EPP_E* codes. */
enum {
    NEED_SLOW = 1,
    NEED_ISOLATE = 2,
    COMMIT_UNKNOWN = 3,
    OFFSET_GAP = 4, /* rolled back: the batch does not continue the stored offsets */
};

struct consumer_writer {
    const consumer_conf_t *conf;
    consumer_dlq_t *dlq;
    consumer_metrics_t *m;
    volatile sig_atomic_t *stop;
    int64_t stop_seen_us; /* monotonic time the stop was first noticed, 0 before */
    PGconn *conn;
    atomic_int db_ok;
    atomic_int broken;      /* a batch did not continue the stored offsets */
    atomic_int dlq_blocked; /* the batch in hand waits for dead letters that failed */
    int failpoint_after_commit;
    int failpoint_load_fails;
    unsigned seed;
    epp_buf_t scratch2;           /* per-row jsonb parameter */
    epp_buf_t arr[3];             /* rollup array parameters */
    int64_t rollup_us, commit_us; /* of the last attempt, for the debug log */
    int64_t users_us;
    epp_tracer_t *tracer;    /* borrowed; NULL: no spans */
    epp_uidcache_t *uids;    /* NULL: off (every user is looked up) */
    epp_buf_t unames;        /* the users to look up: pointers, lengths, uids */
    consumer_users_t *users; /* the lane's user bitmaps (consumer_users.h) */
    char span_name[160];     /* "<topic> process" */
};

static const char lock_offsets_sql[] =
    "INSERT INTO public.epp_consumer_offsets AS o (group_id, topic, partition, next_offset) "
    "SELECT $1, $2, p, -1 FROM unnest($3::int[]) AS u(p) ORDER BY p "
    "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = o.next_offset "
    "RETURNING partition, next_offset";

static const char store_offsets_sql[] =
    "INSERT INTO public.epp_consumer_offsets AS o (group_id, topic, partition, next_offset) "
    "SELECT $1, $2, p, n FROM unnest($3::int[], $4::bigint[]) AS u(p, n) "
    "ON CONFLICT (group_id, topic, partition) DO UPDATE "
    "SET next_offset = EXCLUDED.next_offset, updated_at = now() "
    "WHERE o.next_offset < EXCLUDED.next_offset";

static const char read_offsets_sql[] =
    "SELECT partition, next_offset FROM public.epp_consumer_offsets "
    "WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])";

static const char temp_tables_sql[] =
    "SET client_min_messages = warning;"
    "CREATE TEMP TABLE IF NOT EXISTS epp_stage (event_id uuid, user_id text, event_name text,"
    " metadata jsonb, \"timestamp\" timestamptz) ON COMMIT DELETE ROWS;"
    "RESET client_min_messages";

/* One upsert per rollup kind, from three binary array parameters built in C (no temporary
 * table, no server-side sort). The arrays are sorted (bucket, key bytes), so every writer takes
 * row locks in one order; unnest() yields them in array order. The rollups come last, right
 * before the offsets and the COMMIT, so that their hot rows' locks are held briefly.
 *
 * Minute first: the first statement's trigger takes the totals' advisory lock (sql/011), which
 * then serialises the writers until their COMMIT. The minute upsert has the most keys (one per
 * minute and name of the batch: thousands when catching up, every event its own when importing
 * history); done first, its row work runs before the lock and in parallel with the other lane,
 * and only the smaller hour and day upserts run under it. Lanes still cannot deadlock: each
 * takes minute rows (sorted), then the lock, then hour and day rows (sorted), and a lane holding
 * the lock needs no minute row. */
static const struct {
    consumer_rollup_kind_t kind;
    const char *sql;
} rollup_kinds[] = {
    {CONSUMER_ROLLUP_MINUTE,
     "INSERT INTO public.epp_rollup_minute AS r (bucket, event_name, n)"
     " SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::int8[])"
     " ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n"},
    {CONSUMER_ROLLUP_HOUR, "INSERT INTO public.epp_rollup_hour AS r (bucket, event_name, n)"
                           " SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::int8[])"
                           " ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n"},
    {CONSUMER_ROLLUP_DAY, "INSERT INTO public.epp_rollup_day AS r (bucket, event_name, n)"
                          " SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::int8[])"
                          " ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n"},
};

/* The first statements of every transaction: the rollup generation, read FOR SHARE so that a
 * deleter of user ids from the bitmaps (which increments it first) waits for this transaction,
 * or this one for the deleter's COMMIT -- see consumer_users.h. */
static const char begin_sql[] =
    "BEGIN; SELECT generation FROM public.epp_rollup_generation FOR SHARE";

consumer_writer_t *consumer_writer_create(const consumer_conf_t *conf, consumer_dlq_t *dlq,
                                          consumer_metrics_t *metrics, volatile sig_atomic_t *stop)
{
    consumer_writer_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->conf = conf;
    w->dlq = dlq;
    w->m = metrics;
    w->stop = stop;
    atomic_init(&w->db_ok, 0);
    atomic_init(&w->broken, 0);
    atomic_init(&w->dlq_blocked, 0);
    int64_t lanes = conf->writers > 0 ? conf->writers : 1;
    w->users = consumer_users_create((size_t)(conf->user_bitmap_memory_mb * 1024 * 1024 / lanes));
    if (w->users == NULL) {
        free(w);
        return NULL;
    }
    if (conf->user_cache > 0) {
        size_t per = (size_t)(conf->user_cache / lanes);
        w->uids = epp_uidcache_create(per ? per : 1);
        if (w->uids == NULL) {
            consumer_users_destroy(w->users);
            free(w);
            return NULL;
        }
    }
    w->seed = (unsigned)(time(NULL) ^ getpid());
    /* Test-only: EPP_FAILPOINT=after_db_commit kills the process right after a batch's COMMIT
     * and before the Kafka commit (the crash window the offsets table exists for). */
    if (consumer_failpoint("after_db_commit")) {
        w->failpoint_after_commit = 1;
        EPP_WARN("failpoint after_db_commit is armed: the process exits after its first commit");
    }
    /* Test-only: EPP_FAILPOINT=offsets_load_fails makes every offset load fail, as it does when
     * a stop comes while Postgres is unreachable. */
    if (consumer_failpoint("offsets_load_fails")) {
        w->failpoint_load_fails = 1;
        EPP_WARN("failpoint offsets_load_fails is armed: stored offsets are never read");
    }
    return w;
}

void consumer_writer_set_tracer(consumer_writer_t *w, epp_tracer_t *tracer)
{
    w->tracer = tracer;
    snprintf(w->span_name, sizeof w->span_name, "%s process", w->conf->topic);
}

void consumer_writer_destroy(consumer_writer_t *w)
{
    if (w == NULL)
        return;
    if (w->conn != NULL)
        PQfinish(w->conn);
    epp_buf_free(&w->scratch2);
    consumer_users_destroy(w->users);
    epp_uidcache_destroy(w->uids);
    epp_buf_free(&w->unames);
    for (int i = 0; i < 3; i++)
        epp_buf_free(&w->arr[i]);
    free(w);
}

int consumer_writer_db_ok(const consumer_writer_t *w)
{
    return atomic_load(&((consumer_writer_t *)w)->db_ok);
}

int consumer_writer_broken(const consumer_writer_t *w)
{
    return atomic_load(&((consumer_writer_t *)w)->broken);
}

int consumer_writer_dlq_blocked(const consumer_writer_t *w)
{
    return atomic_load(&((consumer_writer_t *)w)->dlq_blocked);
}

/* Marks the batch in hand as held by dead letters that could not be produced (or no longer),
 * for /ready and epp_consumer_dead_letter_blocked. */
static void set_dlq_blocked(consumer_writer_t *w, int blocked)
{
    if (atomic_exchange(&w->dlq_blocked, blocked) != blocked)
        epp_series_add(w->m->dlq_blocked, blocked ? 1.0 : -1.0);
}

/* A dead letter of b failed (rc): counted each time; the first failure of a batch is logged at
 * error level with the first message concerned, since the batch -- and with it every later
 * message of its partitions -- now waits for the dead-letter topic to take it. */
static void dlq_failed(consumer_writer_t *w, const consumer_batch_t *b, int rc)
{
    epp_series_inc(w->m->dlq_failures);
    if (consumer_writer_dlq_blocked(w))
        return;
    set_dlq_blocked(w, 1);
    for (size_t i = 0; i < b->n; i++) {
        const consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_BAD || r->dlq_done)
            continue;
        char part[16], off[32], bytes[32];
        snprintf(part, sizeof part, "%" PRId32, r->msg->partition);
        snprintf(off, sizeof off, "%" PRId64, r->msg->offset);
        snprintf(bytes, sizeof bytes, "%zu", r->msg->len);
        EPP_LOGKV(EPP_LOG_ERROR,
                  "DEAD LETTER NOT PRODUCED: the batch is retried and its partitions hold until "
                  "the dead-letter topic takes it",
                  "partition", part, "offset", off, "bytes", bytes, "reason", r->err_code, "error",
                  epp_strerror(rc), "dlq_topic", w->conf->dlq_topic);
        break;
    }
}

/* 1 when retrying must end: a stop was requested, and either there is no batch in hand (start-up,
 * loading offsets: nothing is lost by leaving at once) or it was requested longer than
 * shutdown_timeout_ms ago (the batch in hand gets that long to be written). */
static int gave_up(consumer_writer_t *w, int batch_in_hand)
{
    if (!*w->stop)
        return 0;
    if (!batch_in_hand)
        return 1;
    int64_t now = epp_time_mono_us();
    if (w->stop_seen_us == 0)
        w->stop_seen_us = now;
    return now - w->stop_seen_us >= w->conf->shutdown_timeout_ms * 1000;
}

/* Full-jitter backoff: a random sleep in [0, min(cap, 50 ms * 2^attempt)), in slices so that a
 * stop is noticed. */
static void backoff(consumer_writer_t *w, unsigned attempt, int batch_in_hand)
{
    int64_t cap = w->conf->retry_max_backoff_ms;
    int64_t ceiling = 50;
    for (unsigned i = 0; i < attempt && ceiling < cap; i++)
        ceiling *= 2;
    if (ceiling > cap)
        ceiling = cap;
    int64_t ms = (int64_t)(rand_r(&w->seed) % (unsigned)(ceiling + 1));
    while (ms > 0 && !gave_up(w, batch_in_hand)) {
        int64_t slice = ms < 50 ? ms : 50;
        usleep((useconds_t)(slice * 1000));
        ms -= slice;
    }
}

static void disconnect(consumer_writer_t *w)
{
    if (w->conn != NULL)
        PQfinish(w->conn);
    w->conn = NULL;
    atomic_store(&w->db_ok, 0);
}

static int connect_db(consumer_writer_t *w, epp_pg_error_t *pe)
{
    if (w->conn != NULL && PQstatus(w->conn) == CONNECTION_OK)
        return 0;
    disconnect(w);
    int rc = epp_pg_connect(w->conf->database_url, (int)w->conf->pg_connect_timeout_s,
                            "epp-consumer", &w->conn, pe);
    if (rc != 0)
        return rc;
    rc = epp_pg_exec(w->conn, temp_tables_sql, pe);
    if (rc != 0) {
        disconnect(w);
        return rc;
    }
    atomic_store(&w->db_ok, 1);
    return 0;
}

static void log_pg(epp_log_level_t level, const char *msg, const epp_pg_error_t *pe)
{
    EPP_LOGKV(level, msg, "error", pe->message, "sqlstate", pe->sqlstate, "retriable",
              epp_error_is_retriable(pe->code) ? "true" : "false");
}

int consumer_writer_start(consumer_writer_t *w)
{
    epp_migration_t *dirlist = NULL;
    size_t ndir = 0;
    char err[512];
    const epp_migration_t *list = epp_sql_migrations;
    size_t n = epp_sql_migrations_count;
    if (w->conf->sql_dir != NULL && w->conf->sql_dir[0] != '\0') {
        int rc = epp_migrate_load_dir(w->conf->sql_dir, &dirlist, &ndir, err, sizeof err);
        if (rc != 0) {
            EPP_LOGKV(EPP_LOG_ERROR, "cannot load migrations", "error", err);
            return EPP_EINVAL;
        }
        list = dirlist;
        n = ndir;
    }
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        if (gave_up(w, 0)) {
            rc = EPP_ESTATE;
            break;
        }
        epp_pg_error_t pe;
        rc = connect_db(w, &pe);
        if (rc != 0) {
            log_pg(EPP_LOG_WARN, "cannot connect to Postgres; retrying", &pe);
            backoff(w, attempt, 0);
            continue;
        }
        int applied = 0;
        rc = epp_migrate_apply(w->conn, list, n, &applied, err, sizeof err);
        if (rc == 0) {
            EPP_LOGKV(EPP_LOG_INFO, "schema up to date", "applied", applied ? "some" : "none");
            break;
        }
        if (!epp_error_is_retriable(rc) && PQstatus(w->conn) == CONNECTION_OK) {
            EPP_LOGKV(EPP_LOG_ERROR, "migration failed", "error", err);
            break;
        }
        EPP_LOGKV(EPP_LOG_WARN, "migration interrupted; retrying", "error", err);
        disconnect(w);
        backoff(w, attempt, 0);
    }
    epp_migrate_list_free(dirlist, ndir);
    return rc;
}

/* "{1,2,3}" for an int[] parameter. */
static void int_array(epp_buf_t *out, const consumer_part_t *parts, size_t n, int field)
{
    epp_buf_reset(out);
    epp_buf_append_char(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (field == 0)
            epp_buf_printf(out, "%s%" PRId32, i ? "," : "", parts[i].partition);
        else
            epp_buf_printf(out, "%s%" PRId64, i ? "," : "", parts[i].next);
    }
    epp_buf_append_char(out, '}');
}

static int read_offsets(consumer_writer_t *w, const char *sql, consumer_batch_t *b,
                        epp_pg_error_t *pe)
{
    epp_buf_t arr = {0};
    int_array(&arr, b->parts, b->nparts, 0);
    const char *params[] = {w->conf->group_id, w->conf->topic, arr.data};
    PGresult *res = NULL;
    int rc = epp_pg_exec_params(w->conn, sql, 3, params, 0, &res, pe);
    epp_buf_free(&arr);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->nparts; i++)
        b->parts[i].stored = -1;
    for (int r = 0; r < PQntuples(res); r++) {
        int32_t p = (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10);
        int64_t next = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        for (size_t i = 0; i < b->nparts; i++)
            if (b->parts[i].partition == p)
                b->parts[i].stored = next;
    }
    PQclear(res);
    return 0;
}

/* Reads the generation the first statements returned: the lane forgets the uids it knows
 * stored when it moved. */
static int begin_tx(consumer_writer_t *w, epp_pg_error_t *pe)
{
    PGresult *res = PQexec(w->conn, begin_sql);
    int rc = epp_pg_result_error(w->conn, res, pe);
    if (rc == 0) {
        /* No row (someone deleted it): nothing can be trusted; -2 differs from every value. */
        int64_t gen = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -2;
        consumer_users_set_generation(w->users, gen == -2 ? INT64_MIN : gen);
    }
    PQclear(res);
    return rc;
}

/* The uid of every user of the counted rows (b->users): from the lane's cache, else from the
 * user dictionary, which creates the missing ones in this transaction. */
static int resolve_users(consumer_writer_t *w, consumer_batch_t *b, epp_pg_error_t *pe)
{
    size_t miss = 0;
    for (size_t k = 0; k < b->nusers; k++) {
        consumer_user_t *u = &b->users[k];
        u->uid = epp_uidcache_get(w->uids, consumer_row_str(b, u->off), u->len);
        miss += u->uid < 0;
    }
    if (miss == 0)
        return 0;
    /* One allocation for the three arrays epp_users_resolve takes. */
    epp_buf_reset(&w->unames);
    size_t need = miss * (sizeof(const char *) + sizeof(uint32_t) + sizeof(int64_t) + 16);
    if (epp_buf_reserve(&w->unames, need) != 0)
        return EPP_ENOMEM;
    const char **names = (const char **)(void *)w->unames.data;
    int64_t *uids = (int64_t *)(void *)(names + miss);
    uint32_t *lens = (uint32_t *)(void *)(uids + miss);
    size_t j = 0;
    for (size_t k = 0; k < b->nusers; k++) {
        const consumer_user_t *u = &b->users[k];
        if (u->uid >= 0)
            continue;
        names[j] = consumer_row_str(b, u->off);
        lens[j++] = u->len;
    }
    int rc = epp_users_resolve(w->conn, names, lens, miss, uids, pe);
    if (rc != 0)
        return rc;
    j = 0;
    for (size_t k = 0; k < b->nusers; k++)
        if (b->users[k].uid < 0)
            b->users[k].uid = uids[j++];
    return 0;
}

/* After the COMMIT: the batch's users are in the dictionary, with these uids. */
static void remember_users(consumer_writer_t *w, const consumer_batch_t *b)
{
    for (size_t k = 0; k < b->nusers && w->uids != NULL; k++) {
        const consumer_user_t *u = &b->users[k];
        if (u->uid >= 0 &&
            epp_uidcache_put(w->uids, consumer_row_str(b, u->off), u->len, u->uid) != 0)
            break;
    }
}

static int write_rollups(consumer_writer_t *w, consumer_batch_t *b, epp_pg_error_t *pe)
{
    for (size_t i = 0; i < sizeof rollup_kinds / sizeof rollup_kinds[0]; i++) {
        size_t n = 0;
        if (consumer_rollup_arrays(b->rollup, rollup_kinds[i].kind, &w->arr[0], &w->arr[1],
                                   &w->arr[2], &n) != 0)
            return EPP_ENOMEM;
        if (n == 0)
            continue;
        static const Oid types[3] = {1185, 1009, 1016}; /* timestamptz[], text[], int8[] */
        const char *values[3] = {w->arr[0].data, w->arr[1].data, w->arr[2].data};
        int lengths[3] = {(int)w->arr[0].len, (int)w->arr[1].len, (int)w->arr[2].len};
        static const int formats[3] = {1, 1, 1};
        PGresult *res =
            PQexecParams(w->conn, rollup_kinds[i].sql, 3, types, values, lengths, formats, 0);
        int rc = epp_pg_result_error(w->conn, res, pe);
        PQclear(res);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int store_offsets(consumer_writer_t *w, consumer_batch_t *b, epp_pg_error_t *pe)
{
    epp_buf_t parts = {0}, nexts = {0};
    int_array(&parts, b->parts, b->nparts, 0);
    int_array(&nexts, b->parts, b->nparts, 1);
    const char *params[] = {w->conf->group_id, w->conf->topic, parts.data, nexts.data};
    int rc = epp_pg_exec_params(w->conn, store_offsets_sql, 4, params, 0, NULL, pe);
    epp_buf_free(&parts);
    epp_buf_free(&nexts);
    return rc;
}

/* Produces the dead letters not yet acknowledged and waits for their acknowledgement. */
static int send_dead_letters(consumer_writer_t *w, consumer_batch_t *b, epp_pg_error_t *pe)
{
    size_t sent = 0;
    for (size_t i = 0; i < b->n; i++) {
        consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_BAD || r->dlq_done)
            continue;
        int rc = consumer_dlq_send(w->dlq, r->msg, w->conf->topic, r->err_code,
                                   consumer_row_str(b, r->err_off));
        if (rc != 0) {
            dlq_failed(w, b, rc);
            snprintf(pe->message, sizeof pe->message, "dead-letter produce failed");
            pe->sqlstate[0] = '\0';
            return pe->code = rc;
        }
        sent++;
    }
    if (sent == 0)
        return 0;
    int rc = consumer_dlq_flush(w->dlq, 30000);
    if (rc != 0) {
        dlq_failed(w, b, rc);
        snprintf(pe->message, sizeof pe->message, "dead-letter topic did not acknowledge");
        pe->sqlstate[0] = '\0';
        return pe->code = rc;
    }
    for (size_t i = 0; i < b->n; i++) {
        consumer_row_t *r = &b->rows[i];
        if (r->state == CONSUMER_ROW_BAD && !r->dlq_done) {
            r->dlq_done = 1;
            consumer_metrics_dead_lettered(w->m, r->err_code);
            EPP_LOGKV(EPP_LOG_WARN, "message dead-lettered", "reason", r->err_code, "error",
                      consumer_row_str(b, r->err_off));
        }
    }
    return 0;
}

/* Marks rows the offsets table says are stored already. Returns how many were newly skipped. */
static size_t skip_stored(consumer_batch_t *b)
{
    size_t skipped = 0;
    for (size_t i = 0; i < b->n; i++) {
        consumer_row_t *r = &b->rows[i];
        if (r->state == CONSUMER_ROW_SKIPPED)
            continue;
        for (size_t k = 0; k < b->nparts; k++) {
            if (b->parts[k].partition == r->msg->partition) {
                if (r->msg->offset < b->parts[k].stored) {
                    r->state = CONSUMER_ROW_SKIPPED;
                    skipped++;
                }
                break;
            }
        }
    }
    return skipped;
}

/* 1 when some partition's stored next offset lies before the offset from which this batch's
 * messages of it are known complete: storing the batch's end would pass over messages this
 * process never read (consumer_positions.h). Logs each such partition. Offsets between the stored
 * one and the batch's first message that the broker did not hand over (transaction markers) are
 * not a gap: the read position accounts for them. */
static int has_gap(const consumer_batch_t *b)
{
    int gap = 0;
    for (size_t k = 0; k < b->nparts; k++) {
        const consumer_part_t *p = &b->parts[k];
        if (p->from < 0 || p->stored >= p->from)
            continue;
        char part[16], stored[32], from[32], first[32];
        snprintf(part, sizeof part, "%" PRId32, p->partition);
        snprintf(stored, sizeof stored, "%" PRId64, p->stored);
        snprintf(from, sizeof from, "%" PRId64, p->from);
        snprintf(first, sizeof first, "%" PRId64, p->first);
        EPP_LOGKV(EPP_LOG_ERROR,
                  "OFFSET GAP: the batch does not continue the stored offset; nothing stored",
                  "partition", part, "stored_next_offset", stored, "read_from", from,
                  "batch_first_offset", first);
        gap = 1;
    }
    return gap;
}

/* One attempt in one transaction. */
static int try_write(consumer_writer_t *w, consumer_batch_t *b, write_mode_t mode,
                     int *rollup_ready, epp_pg_error_t *pe)
{
    consumer_users_abandon(w->users); /* a previous attempt's writes did not commit */
    int rc = begin_tx(w, pe);
    if (rc != 0) {
        epp_pg_rollback(w->conn);
        return rc;
    }
    if ((rc = read_offsets(w, lock_offsets_sql, b, pe)) != 0)
        goto fail;
    if (has_gap(b)) {
        epp_pg_rollback(w->conn);
        return OFFSET_GAP;
    }
    size_t skipped = skip_stored(b);
    if (skipped > 0) {
        char n[24];
        snprintf(n, sizeof n, "%zu", skipped);
        EPP_LOGKV(EPP_LOG_WARN, "skipping messages already stored by another consumer", "count", n);
        if ((rc = consumer_batch_encode(b)) != 0)
            goto fail;
        *rollup_ready = 0;
    }
    for (size_t i = 0; i < b->n; i++)
        b->rows[i].inserted = 0;

    size_t ok_rows = 0;
    for (size_t i = 0; i < b->n; i++)
        ok_rows += b->rows[i].state == CONSUMER_ROW_OK;
    if (ok_rows > 0) {
        if (mode == MODE_FAST) {
            rc = consumer_rows_copy(w->conn, b, "public.events", pe);
            if (rc != 0 && strcmp(pe->sqlstate, EPP_PG_UNIQUE_VIOLATION) == 0) {
                epp_pg_rollback(w->conn);
                return NEED_SLOW;
            }
            if (rc == 0)
                for (size_t i = 0; i < b->n; i++)
                    b->rows[i].inserted = b->rows[i].state == CONSUMER_ROW_OK;
        } else if (mode == MODE_SLOW) {
            *rollup_ready = 0; /* only the rows RETURNING names are counted */
            rc = consumer_rows_insert_staged(w->conn, b, pe);
        } else {
            *rollup_ready = 0;
            rc = consumer_rows_insert_each(w->conn, b, &w->scratch2, pe);
        }
        if (rc != 0 && mode != MODE_ISOLATE && epp_pg_is_data_error(pe) &&
            PQstatus(w->conn) == CONNECTION_OK) {
            log_pg(EPP_LOG_WARN, "batch holds a value Postgres rejects; isolating it row by row",
                   pe);
            epp_pg_rollback(w->conn);
            return NEED_ISOLATE;
        }
        if (rc != 0)
            goto fail;
        if (!*rollup_ready && (rc = consumer_batch_aggregate(b, 1)) != 0)
            goto fail;
        *rollup_ready = 0; /* computed for this attempt only */
        /* The dictionary before the rollups: a lane waiting for another's new dictionary row
         * must not hold the rollup totals' lock (sql/011) meanwhile. */
        if ((rc = resolve_users(w, b, pe)) != 0)
            goto fail;
        int64_t tu = epp_time_mono_us();
        if ((rc = consumer_users_write(w->users, w->conn, b, pe)) != 0)
            goto fail;
        int64_t tr = epp_time_mono_us();
        w->users_us = tr - tu;
        if ((rc = write_rollups(w, b, pe)) != 0)
            goto fail;
        w->rollup_us = epp_time_mono_us() - tr;
    }
    if ((rc = store_offsets(w, b, pe)) != 0)
        goto fail;
    if ((rc = send_dead_letters(w, b, pe)) != 0)
        goto fail;
    int64_t tc = epp_time_mono_us();
    rc = epp_pg_commit(w->conn, pe);
    w->commit_us = epp_time_mono_us() - tc;
    if (rc == EPP_EIO)
        return COMMIT_UNKNOWN;
    return rc;
fail:
    epp_pg_rollback(w->conn);
    return rc;
}

/* After a COMMIT whose outcome is unknown: 1 when the offsets table shows the batch stored. */
static int committed_after_all(consumer_writer_t *w, consumer_batch_t *b, epp_pg_error_t *pe)
{
    int64_t *want = calloc(b->nparts, sizeof *want);
    if (want == NULL)
        return EPP_ENOMEM;
    for (size_t k = 0; k < b->nparts; k++)
        want[k] = b->parts[k].next;
    int rc = read_offsets(w, read_offsets_sql, b, pe);
    int done = rc == 0;
    for (size_t k = 0; k < b->nparts && done; k++)
        done = b->parts[k].stored >= want[k];
    free(want);
    return rc != 0 ? rc : done;
}

/* Sampled links first (the span keeps at most 128), then by id, so that equal contexts are
 * adjacent and dropped once. */
static int link_cmp(const void *pa, const void *pb)
{
    const epp_trace_ctx_t *a = pa, *b = pb;
    if ((a->flags & 1) != (b->flags & 1))
        return (a->flags & 1) ? -1 : 1;
    return memcmp(a, b, sizeof *a);
}

static epp_span_t *batch_span_start(consumer_writer_t *w, consumer_batch_t *b)
{
    if (w->tracer == NULL)
        return NULL;
    size_t n = 0;
    if (b->nlinks > 1) {
        qsort(b->links, b->nlinks, sizeof *b->links, link_cmp);
        for (size_t i = 0; i < b->nlinks; i++)
            if (n == 0 || memcmp(&b->links[n - 1], &b->links[i], sizeof *b->links) != 0)
                b->links[n++] = b->links[i];
        b->nlinks = n;
    }
    epp_span_t *span =
        epp_span_start_linked(w->tracer, w->span_name, EPP_SPAN_CONSUMER, b->links, b->nlinks, 0);
    if (!epp_span_recording(span))
        return span;
    epp_span_set_str(span, "messaging.system", "kafka");
    epp_span_set_str(span, "messaging.destination.name", w->conf->topic);
    epp_span_set_str(span, "messaging.operation.type", "process");
    epp_span_set_str(span, "messaging.operation.name", "process");
    epp_span_set_int(span, "messaging.batch.message_count", (int64_t)b->n);
    epp_span_set_str(span, "messaging.kafka.consumer.group", w->conf->group_id);
    epp_span_set_str(span, "messaging.consumer.group.name", w->conf->group_id);
    epp_span_set_str(span, "db.system", "postgresql");
    if (b->nparts == 1)
        epp_span_set_int(span, "messaging.destination.partition.id", b->parts[0].partition);
    return span;
}

/* A CLIENT span for one transaction attempt, child of the batch span. */
static epp_span_t *attempt_span_start(consumer_writer_t *w, epp_span_t *parent, write_mode_t mode)
{
    if (!epp_span_recording(parent))
        return NULL;
    epp_span_t *span =
        epp_span_start(w->tracer, "batch transaction", EPP_SPAN_CLIENT, epp_span_ctx(parent), 0);
    epp_span_set_str(span, "db.system", "postgresql");
    epp_span_set_str(span, "db.operation.name", mode == MODE_FAST ? "COPY" : "INSERT");
    epp_span_set_str(span, "db.collection.name", "public.events");
    epp_span_set_str(span, "epp.write.path",
                     mode == MODE_FAST   ? "fast"
                     : mode == MODE_SLOW ? "slow"
                                         : "isolate");
    if (w->conn != NULL) {
        epp_span_set_str(span, "db.namespace", PQdb(w->conn));
        const char *host = PQhost(w->conn);
        if (host != NULL && host[0] != '\0' && host[0] != '/')
            epp_span_set_str(span, "server.address", host);
        const char *port = PQport(w->conn);
        if (port != NULL && port[0] != '\0')
            epp_span_set_int(span, "server.port", strtol(port, NULL, 10));
    }
    return span;
}

static void attempt_span_end(epp_span_t *span, int rc, const epp_pg_error_t *pe)
{
    if (span == NULL)
        return;
    if (rc == NEED_SLOW) {
        epp_span_set_str(span, "epp.write.outcome", "replay: rolled back for the staging path");
    } else if (rc == NEED_ISOLATE) {
        epp_span_set_str(span, "epp.write.outcome", "rejected value: rolled back to isolate it");
    } else if (rc == COMMIT_UNKNOWN) {
        epp_span_set_status(span, EPP_SPAN_STATUS_ERROR, "connection lost during COMMIT");
    } else if (rc != 0) {
        if (pe->sqlstate[0])
            epp_span_set_str(span, "db.response.status_code", pe->sqlstate);
        epp_span_set_status(span, EPP_SPAN_STATUS_ERROR, pe->message[0] ? pe->message : "failed");
    }
    epp_span_end(span, 0);
}

int consumer_writer_write(consumer_writer_t *w, consumer_batch_t *b)
{
    int64_t t0 = epp_time_mono_us();
    epp_span_t *span = batch_span_start(w, b);
    unsigned failures = 0;
    write_mode_t mode = MODE_FAST;
    /* The polling thread aggregated the rollups over every storable row (unless it ran out of
     * memory): right as long as the fast path inserts them all. */
    int rollup_ready = b->aggregated;
    int rc;
    for (unsigned attempt = 0;;) {
        if (gave_up(w, 1)) {
            EPP_WARN("stopping: batch of %zu messages left unwritten (it will be read again)",
                     b->n);
            epp_span_set_int(span, "epp.write.retries", failures);
            epp_span_set_status(span, EPP_SPAN_STATUS_ERROR,
                                "stopping: batch left unwritten (it will be read again)");
            epp_span_end(span, 0);
            set_dlq_blocked(w, 0);
            return EPP_ESTATE;
        }
        epp_pg_error_t pe;
        memset(&pe, 0, sizeof pe);
        rc = connect_db(w, &pe);
        if (rc == 0) {
            epp_span_t *as = attempt_span_start(w, span, mode);
            rc = try_write(w, b, mode, &rollup_ready, &pe);
            attempt_span_end(as, rc, &pe);
            if (rc == 0)
                break;
            if (rc == NEED_SLOW) {
                EPP_DEBUG("batch replays stored rows; using the staging path");
                mode = MODE_SLOW;
                continue;
            }
            if (rc == NEED_ISOLATE) {
                mode = MODE_ISOLATE;
                continue;
            }
            if (rc == OFFSET_GAP) {
                /* Not retried: the same batch would find the same gap. The messages in between
                 * are read again only by starting the partition at the stored offset, which the
                 * next owner does: the caller leaves (consumer_writer_broken). */
                atomic_store(&w->broken, 1);
                epp_span_set_status(span, EPP_SPAN_STATUS_ERROR, "offset gap: nothing stored");
                epp_span_end(span, 0);
                return EPP_ESTATE;
            }
            if (rc == COMMIT_UNKNOWN) {
                epp_series_inc(w->m->commit_unknown);
                EPP_WARN("connection lost during COMMIT: outcome unknown until the offsets table "
                         "says otherwise");
                disconnect(w);
                int known = -1;
                for (unsigned a2 = 0; known < 0 && !gave_up(w, 1); a2++) {
                    if (connect_db(w, &pe) == 0) {
                        int c = committed_after_all(w, b, &pe);
                        if (c >= 0) {
                            known = c;
                            break;
                        }
                    }
                    disconnect(w);
                    backoff(w, a2, 1);
                }
                if (known == 1) {
                    EPP_INFO("the unknown COMMIT had committed");
                    break;
                }
                /* Not committed (or still unknown at a stop): redo; the offsets check in the
                 * next attempt skips whatever turns out to be stored. */
                continue;
            }
        }
        epp_series_inc(w->m->retries);
        failures++;
        if (PQstatus(w->conn) != CONNECTION_OK || rc == EPP_EIO)
            disconnect(w);
        if (epp_error_is_retriable(rc))
            log_pg(EPP_LOG_WARN, "batch write failed; retrying", &pe);
        else
            log_pg(EPP_LOG_ERROR, "batch write failed (not a per-message error); retrying", &pe);
        backoff(w, attempt++, 1);
    }
    if (consumer_writer_dlq_blocked(w)) {
        EPP_INFO("dead letters produced: the held partitions move again");
        set_dlq_blocked(w, 0);
    }
    /* Committed: the batch's users have these uids, and what it stored of their bitmaps is
     * known. */
    remember_users(w, b);
    consumer_users_committed(w->users);
    if (w->failpoint_after_commit) {
        EPP_WARN("failpoint after_db_commit: exiting with 137");
        _exit(137);
    }
    size_t inserted = 0, dups = b->ndup;
    for (size_t i = 0; i < b->n; i++) {
        const consumer_row_t *r = &b->rows[i];
        inserted += r->state == CONSUMER_ROW_OK && r->inserted;
        dups += (r->state == CONSUMER_ROW_OK && !r->inserted) || r->state == CONSUMER_ROW_SKIPPED;
    }
    epp_series_add(w->m->inserted, (double)inserted);
    epp_series_add(w->m->duplicates, (double)dups);
    epp_series_inc(w->m->batches);
    epp_series_observe(w->m->batch_size, (double)b->n);
    int64_t t1 = epp_time_mono_us();
    epp_series_observe(w->m->write_seconds, (double)(t1 - t0) / 1e6);
    if (epp_span_recording(span)) {
        epp_span_set_int(span, "epp.rows.inserted", (int64_t)inserted);
        epp_span_set_int(span, "epp.rows.duplicates", (int64_t)dups);
        epp_span_set_int(span, "epp.rows.dead_lettered", (int64_t)b->nbad);
        epp_span_set_str(span, "epp.write.path",
                         mode == MODE_FAST   ? "fast"
                         : mode == MODE_SLOW ? "slow"
                                             : "isolate");
        if (failures > 0)
            epp_span_set_int(span, "epp.write.retries", failures);
    }
    epp_span_end(span, 0);
    EPP_DEBUG("batch written: %zu messages, %zu inserted, %s path, %.1f ms after the first "
              "message, write %.1f ms (users %.1f ms: %zu uids sent, %zu buckets merged, %zu "
              "bytes known; rollups %.1f ms, %zu keys; commit %.1f ms)",
              b->n, inserted,
              mode == MODE_FAST   ? "fast"
              : mode == MODE_SLOW ? "slow"
                                  : "isolate",
              (double)(t0 - b->first_add_us) / 1000, (double)(t1 - t0) / 1000,
              (double)w->users_us / 1000, consumer_users_sent(w->users),
              consumer_users_merged(w->users), consumer_users_memory(w->users),
              (double)w->rollup_us / 1000, consumer_rollup_size(b->rollup),
              (double)w->commit_us / 1000);
    return 0;
}

int consumer_writer_load_offsets(consumer_writer_t *w, const int32_t *parts, size_t n,
                                 int64_t *next)
{
    consumer_batch_t tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.parts = calloc(n ? n : 1, sizeof *tmp.parts);
    if (tmp.parts == NULL)
        return EPP_ENOMEM;
    tmp.nparts = n;
    for (size_t i = 0; i < n; i++)
        tmp.parts[i].partition = parts[i];
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        if (gave_up(w, 0) || w->failpoint_load_fails) {
            rc = EPP_ESTATE;
            break;
        }
        epp_pg_error_t pe;
        rc = connect_db(w, &pe);
        if (rc == 0)
            rc = read_offsets(w, read_offsets_sql, &tmp, &pe);
        if (rc == 0)
            break;
        epp_series_inc(w->m->retries);
        log_pg(EPP_LOG_WARN, "cannot read stored offsets; retrying", &pe);
        disconnect(w);
        backoff(w, attempt, 0);
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        next[i] = tmp.parts[i].stored;
    free(tmp.parts);
    return rc;
}
