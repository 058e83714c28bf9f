/* epp-admin retention: shows (--dry-run) or runs, once, the partition and retention maintenance
 * that epp-consumer runs every MAINTENANCE_INTERVAL_S (common/epp_maintain.h, sql/040): day
 * partitions created ahead, those past EVENTS_RETENTION dropped with their event ids, old rows
 * of events_default purged, rollups past ROLLUP_RETENTION purged. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "admin.h"
#include "epp_error.h"
#include "epp_maintain.h"
#include "epp_pg.h"
#include "epp_time.h"

typedef struct {
    int64_t steps, failed;
} totals_t;

static void print_step(const char *prefix, const epp_maintain_step_t *s, int64_t rows,
                       const char *rows_label)
{
    char lo[EPP_TIME_BUFSZ], hi[EPP_TIME_BUFSZ], n[24] = "?";
    epp_time_format(s->lo_us, lo);
    epp_time_format(s->hi_us, hi);
    if (rows >= 0)
        snprintf(n, sizeof n, "%" PRId64, rows);
    printf("%s%-13s %-28s [%s, %s) %s=%s\n", prefix, s->action, s->object, lo, hi, rows_label, n);
}

static void report(void *ud, const epp_maintain_step_t *s, int rc, int64_t rows,
                   const epp_pg_error_t *pe)
{
    totals_t *t = ud;
    t->steps++;
    if (rc != 0) {
        t->failed++;
        fprintf(stderr, "epp-admin: retention: %s %s failed: %s%s%s%s\n", s->action, s->object,
                pe->message, pe->sqlstate[0] ? " (" : "", pe->sqlstate, pe->sqlstate[0] ? ")" : "");
        return;
    }
    print_step("  done ", s, rows, "rows");
}

static void print_keep(const char *name, const char *value)
{
    printf(" %s=%s", name, value && *value ? value : "keep");
}

int admin_retention(const admin_conf_t *c)
{
    epp_maintain_opts_t o;
    char err[256];
    if (epp_maintain_opts_init(&o, c->events_retention, c->rollup_retention, c->partitions_ahead,
                               err, sizeof err) != 0) {
        fprintf(stderr, "epp-admin: %s\n", err);
        return 2;
    }
    if (!c->database_url || !*c->database_url) {
        fprintf(stderr, "epp-admin: DATABASE_URL (--database-url) is not set\n");
        return 1;
    }
    PGconn *conn = NULL;
    epp_pg_error_t pe;
    if (epp_pg_connect(c->database_url, 10, "epp-admin", &conn, &pe) != 0) {
        fprintf(stderr, "epp-admin: cannot connect to the database: %s\n", pe.message);
        return 1;
    }
    printf("retention:%s", c->dry_run ? " dry run:" : "");
    print_keep("events_retention", c->events_retention);
    print_keep("rollup_retention", c->rollup_retention);
    printf(" partitions_ahead=%" PRId64 "\n", c->partitions_ahead);
    int status = 1;
    if (c->dry_run) {
        epp_maintain_step_t *steps = NULL;
        size_t n = 0;
        if (epp_maintain_plan(conn, &o, &steps, &n, &pe) != 0) {
            fprintf(stderr, "epp-admin: retention: %s\n", pe.message);
        } else {
            int64_t drop_rows = 0, drops = 0;
            for (size_t i = 0; i < n; i++) {
                print_step("  would ", &steps[i], steps[i].est_rows,
                           strcmp(steps[i].action, "drop") == 0 ? "~rows" : "rows");
                if (strcmp(steps[i].action, "create") != 0 && steps[i].est_rows > 0)
                    drop_rows += steps[i].est_rows;
                drops += strcmp(steps[i].action, "drop") == 0;
            }
            printf("retention: dry run: steps=%zu partitions_to_drop=%" PRId64
                   " rows_to_remove~%" PRId64 " (nothing changed)\n",
                   n, drops, drop_rows);
            status = 0;
        }
        free(steps);
    } else {
        totals_t t = {0, 0};
        int rc = epp_maintain_run(conn, &o, NULL, report, &t, NULL, &pe);
        if (rc == EPP_EAGAIN && t.steps == 0) {
            fprintf(stderr, "epp-admin: retention: %s; try again later\n", pe.message);
        } else if (rc != 0 && t.steps == 0) {
            fprintf(stderr, "epp-admin: retention: %s\n", pe.message);
        } else {
            printf("retention: steps=%" PRId64 " failed=%" PRId64 "\n", t.steps, t.failed);
            status = t.failed == 0 && rc == 0 ? 0 : 1;
        }
    }
    PQfinish(conn);
    return status;
}
