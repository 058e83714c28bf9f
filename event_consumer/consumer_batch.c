#include "consumer_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_hash.h"
#include "epp_time.h"

consumer_batch_t *consumer_batch_create(epp_pgcopy_format_t fmt)
{
    consumer_batch_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->fmt = fmt;
    epp_event_init(&b->ev);
    b->rollup = consumer_rollup_create();
    if (b->rollup == NULL) {
        consumer_batch_destroy(b);
        return NULL;
    }
    return b;
}

void consumer_batch_reset(consumer_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->rows[i].msg != NULL)
            consumer_msg_destroy(b->rows[i].msg);
    b->n = 0;
    b->bytes = 0;
    b->nparts = 0;
    b->ncopy = 0;
    b->aggregated = 0;
    b->nbad = 0;
    b->ndup = 0;
    b->first_add_us = 0;
    b->nlinks = 0;
    b->nusers = 0;
    epp_buf_reset(&b->arena);
    epp_buf_reset(&b->copy);
    consumer_rollup_reset(b->rollup);
    if (b->set != NULL)
        memset(b->set, 0, b->set_cap * sizeof *b->set);
}

void consumer_batch_destroy(consumer_batch_t *b)
{
    if (b == NULL)
        return;
    if (b->rollup != NULL)
        consumer_batch_reset(b);
    free(b->rows);
    free(b->parts);
    free(b->set);
    free(b->links);
    free(b->users);
    free(b->uset);
    epp_buf_free(&b->arena);
    epp_buf_free(&b->copy);
    consumer_rollup_destroy(b->rollup);
    epp_event_clear(&b->ev);
    free(b);
}

static uint64_t uuid_hash(const epp_uuid_t *u)
{
    uint64_t a, c;
    memcpy(&a, u->b, 8);
    memcpy(&c, u->b + 8, 8);
    uint64_t h = (a ^ (c * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    return h ^ (h >> 32);
}

/* Inserts row i into the set, or returns the index of the row already holding its id. */
static size_t set_insert(consumer_batch_t *b, size_t i)
{
    const epp_uuid_t *id = &b->rows[i].event_id;
    size_t mask = b->set_cap - 1;
    for (size_t s = (size_t)uuid_hash(id) & mask;; s = (s + 1) & mask) {
        uint32_t v = b->set[s];
        if (v == 0) {
            b->set[s] = (uint32_t)(i + 1);
            return (size_t)-1;
        }
        if (memcmp(b->rows[v - 1].event_id.b, id->b, 16) == 0)
            return v - 1;
    }
}

size_t consumer_batch_find(const consumer_batch_t *b, const epp_uuid_t *event_id)
{
    if (b->set_cap == 0)
        return (size_t)-1;
    size_t mask = b->set_cap - 1;
    for (size_t s = (size_t)uuid_hash(event_id) & mask;; s = (s + 1) & mask) {
        uint32_t v = b->set[s];
        if (v == 0)
            return (size_t)-1;
        if (memcmp(b->rows[v - 1].event_id.b, event_id->b, 16) == 0)
            return b->rows[v - 1].state == CONSUMER_ROW_OK ? v - 1 : (size_t)-1;
    }
}

static int grow_rows(consumer_batch_t *b)
{
    size_t ncap = b->cap ? b->cap * 2 : 1024;
    consumer_row_t *nr = realloc(b->rows, ncap * sizeof *nr);
    if (nr == NULL)
        return EPP_ENOMEM;
    b->rows = nr;
    b->cap = ncap;
    /* The set stays at most half full: rebuild it at four times the row capacity. */
    size_t scap = ncap * 4;
    uint32_t *ns = calloc(scap, sizeof *ns);
    if (ns == NULL)
        return EPP_ENOMEM;
    free(b->set);
    b->set = ns;
    b->set_cap = scap;
    for (size_t i = 0; i < b->n; i++)
        if (b->rows[i].state == CONSUMER_ROW_OK || b->rows[i].state == CONSUMER_ROW_SKIPPED)
            set_insert(b, i);
    return 0;
}

static int note_partition(consumer_batch_t *b, int32_t partition, int64_t offset, int64_t from)
{
    for (size_t i = 0; i < b->nparts; i++) {
        consumer_part_t *p = &b->parts[i];
        if (p->partition == partition) {
            if (offset < p->first)
                p->first = offset;
            if (offset + 1 > p->next)
                p->next = offset + 1;
            return 0;
        }
    }
    if (epp_grow(&b->parts, &b->parts_cap, b->nparts, sizeof *b->parts, 16) != 0)
        return EPP_ENOMEM;
    b->parts[b->nparts++] = (consumer_part_t){partition, from, offset, offset + 1, -1};
    return 0;
}

static int arena_put(epp_buf_t *a, const char *s, size_t len, size_t *off)
{
    *off = a->len;
    int rc = epp_buf_append(a, s, len);
    if (rc == 0)
        rc = epp_buf_append_char(a, '\0');
    return rc;
}

int consumer_batch_mark_bad(consumer_batch_t *b, size_t i, const char *code, const char *message)
{
    consumer_row_t *r = &b->rows[i];
    if (r->state != CONSUMER_ROW_BAD)
        b->nbad++;
    r->state = CONSUMER_ROW_BAD;
    r->err_code = code;
    return arena_put(&b->arena, message, strlen(message), &r->err_off);
}

int consumer_decode(const void *value, size_t len, epp_event_t *ev, epp_event_error_t *err)
{
    if (value == NULL || len == 0) {
        err->code = "invalid_json";
        snprintf(err->message, sizeof err->message, "empty message");
        err->field[0] = '\0';
        return EPP_EINVAL;
    }
    return epp_event_parse(value, len, EPP_EVENT_FROM_KAFKA, epp_time_now_us(), ev, err);
}

void consumer_batch_row(const consumer_batch_t *b, size_t i, epp_pgcopy_row_t *out)
{
    const consumer_row_t *r = &b->rows[i];
    out->event_id = r->event_id;
    out->user_id = b->arena.data + r->user_off;
    out->user_id_len = r->user_len;
    out->event_name = b->arena.data + r->name_off;
    out->event_name_len = r->name_len;
    out->metadata = b->arena.data + r->meta_off;
    out->metadata_len = r->meta_len;
    out->timestamp_us = r->timestamp_us;
}

/* Records the producer span context of msg's traceparent header (absent or invalid: none). */
static int note_link(consumer_batch_t *b, const consumer_msg_t *msg)
{
    size_t len = 0;
    const char *val = consumer_msg_header(msg, "traceparent", &len);
    if (val == NULL || len != EPP_TRACEPARENT_LEN)
        return 0;
    char tp[EPP_TRACEPARENT_LEN + 1];
    memcpy(tp, val, len);
    tp[len] = '\0';
    epp_trace_ctx_t ctx;
    if (epp_traceparent_parse(tp, &ctx) != 0)
        return 0;
    if (b->nlinks > 0 && memcmp(&b->links[b->nlinks - 1], &ctx, sizeof ctx) == 0)
        return 0;
    if (epp_grow(&b->links, &b->links_cap, b->nlinks, sizeof *b->links, 256) != 0)
        return EPP_ENOMEM;
    b->links[b->nlinks++] = ctx;
    return 0;
}

int consumer_batch_add(consumer_batch_t *b, consumer_msg_t *msg, int64_t from)
{
    if (b->n == b->cap && grow_rows(b) != 0) {
        consumer_msg_destroy(msg);
        return EPP_ENOMEM;
    }
    if (b->n == 0)
        b->first_add_us = epp_time_mono_us();
    size_t i = b->n++;
    consumer_row_t *r = &b->rows[i];
    memset(r, 0, sizeof *r);
    r->msg = msg;
    b->bytes += msg->len;
    int rc = note_partition(b, msg->partition, msg->offset, from);
    if (rc == 0 && b->trace)
        rc = note_link(b, msg);
    if (rc != 0)
        return rc;

    epp_event_error_t err;
    rc = consumer_decode(msg->payload, msg->len, &b->ev, &err);
    if (rc != 0) {
        char text[sizeof err.message + sizeof err.field + 16];
        if (err.field[0])
            snprintf(text, sizeof text, "%s (field %s)", err.message, err.field);
        else
            snprintf(text, sizeof text, "%s", err.message);
        return consumer_batch_mark_bad(b, i, err.code ? err.code : "invalid_event", text);
    }
    const epp_event_t *ev = &b->ev;
    r->event_id = ev->event_id;
    r->timestamp_us = ev->timestamp_us;
    r->user_len = (uint32_t)ev->user_id_len;
    r->name_len = (uint32_t)ev->event_name_len;
    r->meta_len = (uint32_t)ev->metadata_len;
    if ((rc = arena_put(&b->arena, ev->user_id, ev->user_id_len, &r->user_off)) != 0 ||
        (rc = arena_put(&b->arena, ev->event_name, ev->event_name_len, &r->name_off)) != 0 ||
        (rc = arena_put(&b->arena, ev->metadata, ev->metadata_len, &r->meta_off)) != 0)
        return rc;
    if (set_insert(b, i) != (size_t)-1) {
        r->state = CONSUMER_ROW_DUP;
        b->ndup++;
        return 0;
    }
    r->state = CONSUMER_ROW_OK;
    /* Encode as we go, so that the finished batch's COPY data is ready for the writer. */
    if (b->ncopy == 0 && (rc = epp_pgcopy_begin(&b->copy, b->fmt)) != 0)
        return rc;
    epp_pgcopy_row_t row;
    consumer_batch_row(b, i, &row);
    if ((rc = epp_pgcopy_row(&b->copy, b->fmt, &row)) != 0)
        return rc;
    b->ncopy++;
    return 0;
}

int consumer_batch_encode(consumer_batch_t *b)
{
    epp_buf_reset(&b->copy);
    b->ncopy = 0;
    int rc = epp_pgcopy_begin(&b->copy, b->fmt);
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        if (b->rows[i].state != CONSUMER_ROW_OK)
            continue;
        epp_pgcopy_row_t row;
        consumer_batch_row(b, i, &row);
        rc = epp_pgcopy_row(&b->copy, b->fmt, &row);
        b->ncopy++;
    }
    return rc;
}

static uint64_t str_hash(const char *s, size_t len)
{
    return epp_hash_bytes(0, s, len);
}

/* The index in b->users of row r's user, added when new. */
static int intern_user(consumer_batch_t *b, consumer_row_t *r)
{
    /* The set stays at most half full: rebuilt at four times the users' capacity (made here,
     * on the batch's first user). */
    if (b->uset == NULL || b->nusers == b->users_cap) {
        size_t ncap = b->users_cap ? b->users_cap * 2 : 1024;
        consumer_user_t *nu = realloc(b->users, ncap * sizeof *nu);
        uint32_t *ns = calloc(ncap * 4, sizeof *ns);
        if (nu == NULL || ns == NULL) {
            free(ns);
            if (nu != NULL)
                b->users = nu;
            return EPP_ENOMEM;
        }
        b->users = nu;
        b->users_cap = ncap;
        free(b->uset);
        b->uset = ns;
        b->uset_cap = ncap * 4;
        for (size_t k = 0; k < b->nusers; k++) {
            const consumer_user_t *u = &b->users[k];
            size_t s = (size_t)str_hash(b->arena.data + u->off, u->len) & (b->uset_cap - 1);
            while (b->uset[s] != 0)
                s = (s + 1) & (b->uset_cap - 1);
            b->uset[s] = (uint32_t)(k + 1);
        }
    }
    const char *key = b->arena.data + r->user_off;
    size_t mask = b->uset_cap - 1;
    for (size_t s = (size_t)str_hash(key, r->user_len) & mask;; s = (s + 1) & mask) {
        uint32_t v = b->uset[s];
        if (v == 0) {
            b->users[b->nusers] = (consumer_user_t){r->user_off, r->user_len, -1};
            b->uset[s] = (uint32_t)++b->nusers;
            r->uix = (uint32_t)b->nusers - 1;
            return 0;
        }
        const consumer_user_t *u = &b->users[v - 1];
        if (u->len == r->user_len && memcmp(b->arena.data + u->off, key, u->len) == 0) {
            r->uix = v - 1;
            return 0;
        }
    }
}

int consumer_batch_aggregate(consumer_batch_t *b, int only_inserted)
{
    consumer_rollup_reset(b->rollup);
    b->nusers = 0;
    if (b->uset != NULL)
        memset(b->uset, 0, b->uset_cap * sizeof *b->uset);
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_OK || (only_inserted && !r->inserted))
            continue;
        rc = consumer_rollup_add(b->rollup, r->timestamp_us, b->arena.data + r->name_off,
                                 r->name_len);
        if (rc == 0)
            rc = intern_user(b, r);
    }
    b->aggregated = rc == 0 && !only_inserted;
    return rc;
}
