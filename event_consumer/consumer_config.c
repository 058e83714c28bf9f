#include "consumer_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "epp_maintain.h"

#define C consumer_conf_t
const epp_conf_opt_t consumer_conf_opts[] = {
    EPP_OPT_KAFKA_BOOTSTRAP(C, bootstrap),
    EPP_OPT_KAFKA_TOPIC(C, topic),
    EPP_OPT_KAFKA_TOPIC_PARTITIONS(C, topic_partitions),
    EPP_OPT_KAFKA_DLQ_TOPIC(C, dlq_topic),
    EPP_CONF_STR("kafka-group-id", "KAFKA_GROUP_ID", "event-consumer", C, group_id,
                 "Consumer group; consumers of one group split the partitions"),
    EPP_OPT_KAFKA_CONSUMER_CONFIG(C, kafka_consumer_config),
    EPP_CONF_INT("kafka-session-timeout-ms", "KAFKA_SESSION_TIMEOUT_MS", "10000", 1000, 3600000, C,
                 session_timeout_ms,
                 "Consumer group session timeout (ms): a silent consumer loses its partitions"),
    EPP_OPT_PG_URL(C, database_url),
    EPP_OPT_PG_CONNECT_TIMEOUT(C, pg_connect_timeout_s, "5"),
    EPP_OPT_SQL_DIR(C, sql_dir),
    EPP_OPTS_HTTP_LISTEN(C, http, "8003"),
    EPP_CONF_INT("consumer-batch-size", "CONSUMER_BATCH_SIZE", "10000", 1, 100000, C, batch_size,
                 "Most rows written in one transaction"),
    EPP_CONF_INT("consumer-batch-bytes", "CONSUMER_BATCH_BYTES", "3145728", 65536, 1073741824, C,
                 batch_bytes,
                 "Most message bytes in one transaction: a batch of large events is written "
                 "before CONSUMER_BATCH_SIZE rows (bounds the consumer's memory)"),
    EPP_CONF_INT("consumer-merge-batches", "CONSUMER_MERGE_BATCHES", "2", 1, 64, C, merge_batches,
                 "Batches' worth of messages (rows and bytes) a lane holds, to write the oldest "
                 "first across its partitions (1: each batch from the next batch's worth)"),
    EPP_CONF_INT("consumer-batch-ms", "CONSUMER_BATCH_MS", "100", 1, 60000, C, batch_ms,
                 "Longest wait (ms) for a batch to fill before it is written"),
    EPP_CONF_INT("retry-max-backoff-ms", "RETRY_MAX_BACKOFF_MS", "5000", 10, 600000, C,
                 retry_max_backoff_ms,
                 "Cap of the exponential backoff (full jitter) between database retries"),
    EPP_OPT_SHUTDOWN_TIMEOUT(C, shutdown_timeout_ms, "30000"),
    EPP_CONF_STR("consumer-copy-format", "CONSUMER_COPY_FORMAT", "binary", C, copy_format,
                 "COPY format of the write path: binary or text"),
    EPP_CONF_BOOL("consumer-pipeline", "CONSUMER_PIPELINE", "true", C, pipeline,
                  "Decode the next batch while the database writes this one (a writer thread)"),
    EPP_CONF_INT("consumer-writers", "CONSUMER_WRITERS", "2", 1, 16, C, writers,
                 "Database connections writing in parallel, each its own transactions; "
                 "partition p is always written by writer p % CONSUMER_WRITERS"),
    EPP_CONF_INT("consumer-user-bitmap-memory-mb", "CONSUMER_USER_BITMAP_MEMORY_MB", "16", 0, 4096,
                 C, user_bitmap_memory_mb,
                 "Memory (MiB, split between the writers) for the user ids known stored in the "
                 "per-bucket user bitmaps, so that a batch sends only new ones (0: every user id "
                 "of a batch is sent)"),
    EPP_CONF_INT("consumer-user-cache", "CONSUMER_USER_CACHE", "500000", 0, 100000000, C,
                 user_cache,
                 "user_id -> uid entries of the user dictionary remembered, so that only new "
                 "users are looked up (split between the writers; 0: off, every user is looked "
                 "up)"),
    EPP_MAINTAIN_CONF_OPTS(C),
    EPP_CONF_INT("maintenance-interval-s", "MAINTENANCE_INTERVAL_S", "3600", 1, 86400, C,
                 maintenance_interval_s,
                 "Seconds between runs of the partition and retention maintenance (the first "
                 "run is at start-up; one consumer of several runs it at a time)"),
    EPP_OPTS_LOG(C, log, "info"),
    EPP_OPTS_TRACE(C, trace, "epp-consumer"),
    EPP_CONF_END,
};
#undef C

int consumer_failpoint(const char *name)
{
    const char *list = getenv("EPP_FAILPOINT");
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}
