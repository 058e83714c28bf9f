#include "consumer_metrics.h"

#include "epp_error.h"

static const double batch_buckets[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000};

int consumer_metrics_init(consumer_metrics_t *m, epp_metrics_t *reg)
{
    m->reg = reg;
#define COUNTER(field, name, help)                                                                 \
    do {                                                                                           \
        epp_metric_t *f = epp_metrics_counter(reg, name, help, NULL);                              \
        if (f == NULL || (m->field = epp_metric_default(f)) == NULL)                               \
            return EPP_ENOMEM;                                                                     \
    } while (0)
    COUNTER(consumed, "epp_consumer_messages_consumed_total", "Kafka messages consumed");
    COUNTER(inserted, "epp_consumer_rows_inserted_total", "Rows inserted into public.events");
    COUNTER(duplicates, "epp_consumer_duplicates_skipped_total",
            "Messages not inserted because their event_id or offset was already stored");
    COUNTER(retries, "epp_consumer_retries_total", "Database write attempts retried");
    COUNTER(offset_resets, "epp_consumer_offset_reset_errors_total",
            "Partitions whose stored offset is out of the topic's range (data expired unread)");
    COUNTER(commit_unknown, "epp_consumer_commit_unknown_total",
            "COMMITs whose outcome was unknown (connection lost), resolved from the offsets table");
    COUNTER(batches, "epp_consumer_batches_total", "Batches committed to the database");
    COUNTER(fetch_wakeups, "epp_consumer_fetch_wakeups_total",
            "Requests sent to wake librdkafka's fetcher after its full queue fell below half "
            "(a backlog being read)");
    COUNTER(dlq_failures, "epp_consumer_dead_letter_failures_total",
            "Attempts to dead-letter a batch's messages that the producer or the broker refused "
            "or did not acknowledge (the batch is retried)");
#undef COUNTER
    epp_metric_t *h =
        epp_metrics_histogram(reg, "epp_consumer_batch_size", "Messages per batch written", NULL,
                              batch_buckets, sizeof batch_buckets / sizeof batch_buckets[0]);
    if (h == NULL || (m->batch_size = epp_metric_default(h)) == NULL)
        return EPP_ENOMEM;
    h = epp_metrics_histogram(reg, "epp_consumer_write_duration_seconds",
                              "Time to write one batch (all retries included)", NULL,
                              epp_metrics_latency_buckets, epp_metrics_latency_buckets_n);
    if (h == NULL || (m->write_seconds = epp_metric_default(h)) == NULL)
        return EPP_ENOMEM;
    epp_metric_t *g = epp_metrics_gauge(
        reg, "epp_consumer_dead_letter_blocked",
        "Writers whose batch waits for dead letters that could not be produced", NULL);
    if (g == NULL || (m->dlq_blocked = epp_metric_default(g)) == NULL)
        return EPP_ENOMEM;
    m->dead_lettered = epp_metrics_counter(reg, "epp_consumer_dead_lettered_total",
                                           "Messages sent to the dead-letter topic", "reason");
    m->lag =
        epp_metrics_gauge(reg, "epp_consumer_lag",
                          "High watermark minus the next offset stored in Postgres", "partition");
    if (m->dead_lettered == NULL || m->lag == NULL)
        return EPP_ENOMEM;
    /* Every reason the consumer gives (epp_event_error_t's codes, and db_rejected) is exported
     * at 0 from start-up: Prometheus' increase() cannot see the first dead letter of a series
     * that first appears at 1, and the EppConsumerDeadLetters alert would stay silent
     * (docs/operations.md). */
    static const char *const reasons[] = {"invalid_json",  "invalid_field",     "missing_field",
                                          "unknown_field", "payload_too_large", "db_rejected"};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (epp_metric_series(m->dead_lettered, reasons[i]) == NULL)
            return EPP_ENOMEM;
    return 0;
}

void consumer_metrics_dead_lettered(consumer_metrics_t *m, const char *reason)
{
    epp_series_t *s = epp_metric_series(m->dead_lettered, reason);
    if (s != NULL)
        epp_series_inc(s);
}
