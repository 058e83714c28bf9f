/* A batch: the Kafka messages read since the last write, decoded into rows, with what the
 * writer needs ready-made -- the COPY data of the storable rows and their rollup deltas.
 *
 * Decoding happens as messages are added (on the polling thread); a message that cannot be
 * decoded or fails validation becomes a row in state CONSUMER_ROW_BAD, to be dead-lettered.
 * A second message with an event_id already in the batch becomes CONSUMER_ROW_DUP (the first
 * one is kept). The writer may narrow the set later (rows another consumer already stored,
 * rows the database rejects) and re-encode with consumer_batch_encode().
 *
 * Ownership: the batch owns the messages added to it (consumer_msg_destroy on reset).
 * Threads: one thread at a time; the pipeline hands a whole batch from the polling thread to
 * the writer thread and back. */
#ifndef CONSUMER_BATCH_H
#define CONSUMER_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "consumer_msg.h"
#include "consumer_rollup.h"
#include "epp_buf.h"
#include "epp_event.h"
#include "epp_pgcopy.h"
#include "epp_trace.h"

typedef enum {
    CONSUMER_ROW_OK = 0,  /* to be stored */
    CONSUMER_ROW_DUP,     /* same event_id as an earlier row of this batch: not written */
    CONSUMER_ROW_BAD,     /* can never be stored: dead-lettered */
    CONSUMER_ROW_SKIPPED, /* at an offset the offsets table says is already stored */
} consumer_row_state_t;

typedef struct {
    consumer_msg_t *msg; /* owned by the batch; its partition and offset are the row's */
    uint8_t state;       /* consumer_row_state_t */
    uint8_t inserted;    /* set by the writer: the row was new in public.events */
    uint8_t dlq_done;    /* BAD: the dead-letter copy was acknowledged */
    epp_uuid_t event_id;
    int64_t timestamp_us;
    size_t user_off, name_off, meta_off; /* into the batch arena */
    uint32_t user_len, name_len, meta_len;
    const char *err_code; /* BAD: a static reason ("invalid_json", "db_rejected", ...) */
    size_t err_off;       /* BAD: NUL-terminated message in the arena */
    uint32_t uix;         /* counted by the last aggregate call: its user in users[] */
} consumer_row_t;

/* A distinct user_id of the rows counted by the last aggregate call, and its uid in the user
 * dictionary (-1 until the writer resolved it). */
typedef struct {
    size_t off; /* user_id in the arena */
    uint32_t len;
    int64_t uid;
} consumer_user_t;

/* One partition's span in the batch: offsets [first, next). from is the partition's read
 * position before the batch's first message of it (consumer_positions.h): every offset in
 * [from, first) is accounted for; -1: the stream began at the log start. stored is filled by the
 * writer (the offsets table's next_offset, -1 when none). */
typedef struct {
    int32_t partition;
    int64_t from;
    int64_t first;
    int64_t next;
    int64_t stored;
} consumer_part_t;

typedef struct {
    consumer_row_t *rows;
    size_t n, cap;
    size_t bytes; /* the held messages' payload bytes (CONSUMER_BATCH_BYTES) */
    consumer_part_t *parts;
    size_t nparts, parts_cap;
    epp_buf_t arena;           /* decoded strings of the rows */
    epp_buf_t copy;            /* COPY data of the rows in state OK (see consumer_batch_encode) */
    size_t ncopy;              /* rows in copy */
    consumer_rollup_t *rollup; /* deltas of the rows counted by the last aggregate call */
    int aggregated;            /* the last aggregate call counted every row in state OK */
    consumer_user_t *users;    /* distinct users of those rows */
    size_t nusers, users_cap;
    uint32_t *uset; /* open addressing over user indexes + 1 (0 = empty) */
    size_t uset_cap;
    epp_pgcopy_format_t fmt;
    int64_t first_add_us; /* monotonic time the first message arrived (or was added) */
    size_t nbad, ndup;
    /* Dedupe set: open addressing over row indexes + 1 (0 = empty). */
    uint32_t *set;
    size_t set_cap;
    epp_event_t ev; /* reused for every decode */
    /* Producer span contexts from the messages' traceparent headers, for the batch span's
     * links: collected only when trace is set; a context equal to the previous one (the
     * messages of one ingest request) is not repeated. */
    int trace;
    epp_trace_ctx_t *links;
    size_t nlinks, links_cap;
} consumer_batch_t;

consumer_batch_t *consumer_batch_create(epp_pgcopy_format_t fmt);
/* Destroys the messages still held. Accepts NULL. */
void consumer_batch_destroy(consumer_batch_t *b);
/* Destroys the messages held and empties the batch (keeps its memory). */
void consumer_batch_reset(consumer_batch_t *b);

/* Adds a message (the batch takes ownership, also on failure) and decodes it. Messages carrying
 * an error must not be added. from is the partition's read position before msg
 * (consumer_positions_advance); it is kept for the partition's first message in the batch.
 * 0 or EPP_ENOMEM. */
int consumer_batch_add(consumer_batch_t *b, consumer_msg_t *msg, int64_t from);

/* Decodes a message value into ev (EPP_EVENT_FROM_KAFKA). 0, or EPP_EINVAL/EPP_ETOOBIG with
 * err filled. Exposed for the fuzz target. */
int consumer_decode(const void *value, size_t len, epp_event_t *ev, epp_event_error_t *err);

/* Rebuilds b->copy from the rows in state OK. 0 or EPP_ENOMEM. */
int consumer_batch_encode(consumer_batch_t *b);
/* Rebuilds b->rollup and b->users from the rows in state OK -- only those with inserted set
 * when only_inserted -- and sets b->aggregated when it counted them all. 0 or EPP_ENOMEM (then
 * b->rollup holds a part of the counts, and b->aggregated is 0). */
int consumer_batch_aggregate(consumer_batch_t *b, int only_inserted);
/* Marks a row BAD with a reason (static string) and message (copied). 0 or EPP_ENOMEM. */
int consumer_batch_mark_bad(consumer_batch_t *b, size_t i, const char *code, const char *message);

/* Accessors for a row's strings (valid until reset). */
static inline const char *consumer_row_str(const consumer_batch_t *b, size_t off)
{
    return b->arena.data + off;
}

/* Finds the row holding event_id among rows in state OK, or returns (size_t)-1. */
size_t consumer_batch_find(const consumer_batch_t *b, const epp_uuid_t *event_id);

/* Fills an epp_pgcopy_row_t for row i. */
void consumer_batch_row(const consumer_batch_t *b, size_t i, epp_pgcopy_row_t *out);

#endif
