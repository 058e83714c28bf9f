/* The consumer's Prometheus metrics, registered once at start-up (consumer_metrics_init) and
 * updated lock-free from any thread. */
#ifndef CONSUMER_METRICS_H
#define CONSUMER_METRICS_H

#include "epp_metrics.h"

typedef struct {
    epp_metrics_t *reg;           /* borrowed */
    epp_series_t *consumed;       /* epp_consumer_messages_consumed_total */
    epp_series_t *inserted;       /* epp_consumer_rows_inserted_total */
    epp_series_t *duplicates;     /* epp_consumer_duplicates_skipped_total */
    epp_series_t *retries;        /* epp_consumer_retries_total */
    epp_series_t *offset_resets;  /* epp_consumer_offset_reset_errors_total */
    epp_series_t *commit_unknown; /* epp_consumer_commit_unknown_total */
    epp_series_t *dlq_failures;   /* epp_consumer_dead_letter_failures_total */
    epp_series_t *dlq_blocked;    /* epp_consumer_dead_letter_blocked (gauge) */
    epp_series_t *batches;        /* epp_consumer_batches_total */
    epp_series_t *fetch_wakeups;  /* epp_consumer_fetch_wakeups_total */
    epp_series_t *batch_size;     /* epp_consumer_batch_size (histogram) */
    epp_series_t *write_seconds;  /* epp_consumer_write_duration_seconds (histogram) */
    epp_metric_t *dead_lettered;  /* epp_consumer_dead_lettered_total{reason} */
    epp_metric_t *lag;            /* epp_consumer_lag{partition} */
} consumer_metrics_t;

/* Registers every family in reg (borrowed; must outlive m). 0 or EPP_ENOMEM. */
int consumer_metrics_init(consumer_metrics_t *m, epp_metrics_t *reg);

/* Counts one dead-lettered message with this reason (a low-cardinality code). Any thread. */
void consumer_metrics_dead_lettered(consumer_metrics_t *m, const char *reason);

#endif
