#include "consumer_msg.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* 16 KiB: ~40 live events or ~11 fat ones (1.4 KB) a chunk; a topic of 1,024 partitions keeps
 * 16 MiB in chunks being filled at most. */
#define CHUNK_BYTES ((size_t)16 * 1024)
/* Blocks above this get a malloc of their own, so a chunk never wastes more than a quarter. */
#define BIG_BLOCK (CHUNK_BYTES / 4)
/* Empty chunks kept for reuse (1 MiB); more are freed. */
#define FREE_MAX 64
/* Partitions with a chunk of their own; higher numbers share (correct, only less compact). */
#define MAX_SLOTS 4096

struct consumer_msg_chunk {
    consumer_msgs_t *owner;
    consumer_msg_chunk_t *next_free;
    size_t used;
    size_t live; /* blocks allocated and not destroyed */
    int retired; /* no longer being filled: freed when live reaches 0 */
    alignas(max_align_t) unsigned char data[CHUNK_BYTES];
};

struct consumer_msgs {
    consumer_msg_chunk_t **filling; /* by partition (modulo MAX_SLOTS) */
    size_t nslots;
    consumer_msg_chunk_t *free;
    size_t nfree;
    size_t chunks; /* allocated and not freed */
};

consumer_msgs_t *consumer_msgs_create(void)
{
    return calloc(1, sizeof(consumer_msgs_t));
}

size_t consumer_msgs_chunks(const consumer_msgs_t *s)
{
    return s->chunks;
}

static void release(consumer_msgs_t *s, consumer_msg_chunk_t *c)
{
    if (s->nfree < FREE_MAX) {
        c->next_free = s->free;
        s->free = c;
        s->nfree++;
        return;
    }
    s->chunks--;
    free(c);
}

void consumer_msgs_destroy(consumer_msgs_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nslots; i++)
        free(s->filling[i]); /* empty: every message was destroyed */
    free(s->filling);
    while (s->free != NULL) {
        consumer_msg_chunk_t *c = s->free;
        s->free = c->next_free;
        free(c);
    }
    free(s);
}

/* Room for size bytes in partition's chunk, or NULL (out of memory). */
static void *alloc_block(consumer_msgs_t *s, int32_t partition, size_t size,
                         consumer_msg_chunk_t **chunk)
{
    size_t slot = (size_t)(partition < 0 ? 0 : partition) % MAX_SLOTS;
    if (slot >= s->nslots) {
        size_t n = slot + 1 > 2 * s->nslots ? slot + 1 : 2 * s->nslots;
        consumer_msg_chunk_t **f = realloc(s->filling, n * sizeof(consumer_msg_chunk_t *));
        if (f == NULL)
            return NULL;
        memset(f + s->nslots, 0, (n - s->nslots) * sizeof(consumer_msg_chunk_t *));
        s->filling = f;
        s->nslots = n;
    }
    consumer_msg_chunk_t *c = s->filling[slot];
    if (c != NULL && c->live == 0)
        c->used = 0; /* everything in it was freed: start over */
    if (c == NULL || c->used + size > CHUNK_BYTES) {
        consumer_msg_chunk_t *n = s->free;
        if (n != NULL) {
            s->free = n->next_free;
            s->nfree--;
        } else {
            n = malloc(sizeof *n);
            if (n == NULL)
                return NULL;
            s->chunks++;
        }
        *n = (consumer_msg_chunk_t){.owner = s};
        if (c != NULL) {
            c->retired = 1;
            if (c->live == 0)
                release(s, c);
        }
        s->filling[slot] = c = n;
    }
    void *p = c->data + c->used;
    c->used += (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    c->live++;
    *chunk = c;
    return p;
}

consumer_msg_t *consumer_msg_new(consumer_msgs_t *s, const consumer_msg_t *f,
                                 const rd_kafka_headers_t *hdrs)
{
    size_t vlen = f->payload != NULL ? f->len : 0, klen = f->key != NULL ? f->key_len : 0;
    size_t nh = hdrs != NULL ? rd_kafka_header_cnt(hdrs) : 0;
    size_t size = sizeof(consumer_msg_t) + nh * sizeof(consumer_header_t) + vlen + klen;
    for (size_t i = 0; i < nh; i++) {
        const char *name;
        const void *val;
        size_t len;
        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR)
            size += strlen(name) + (val != NULL ? len : 0);
    }
    consumer_msg_chunk_t *chunk = NULL;
    consumer_msg_t *c =
        size > BIG_BLOCK ? malloc(size) : alloc_block(s, f->partition, size, &chunk);
    if (c == NULL)
        return NULL;
    consumer_header_t *h = (consumer_header_t *)(c + 1);
    char *data = (char *)(h + nh);
    *c = (consumer_msg_t){
        .partition = f->partition,
        .offset = f->offset,
        .timestamp_ms = f->timestamp_ms,
        .payload = f->payload != NULL ? data : NULL,
        .len = vlen,
        .key = f->key != NULL ? data + vlen : NULL,
        .key_len = klen,
        .headers = h,
        .chunk = chunk,
    };
    if (vlen > 0)
        memcpy(data, f->payload, vlen);
    if (klen > 0)
        memcpy(data + vlen, f->key, klen);
    data += vlen + klen;
    for (size_t i = 0; i < nh; i++) {
        const char *name;
        const void *val;
        size_t len;
        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        consumer_header_t *o = &h[c->nheaders++];
        o->name_len = strlen(name);
        o->name = memcpy(data, name, o->name_len);
        data += o->name_len;
        o->value_len = val != NULL ? len : 0;
        o->value = val != NULL ? memcpy(data, val, len) : NULL;
        data += o->value_len;
    }
    return c;
}

consumer_msg_t *consumer_msg_copy(consumer_msgs_t *s, const rd_kafka_message_t *m)
{
    consumer_msg_t f = {
        .partition = m->partition,
        .offset = m->offset,
        .timestamp_ms = rd_kafka_message_timestamp(m, NULL),
        .payload = m->payload,
        .len = m->len,
        .key = m->key,
        .key_len = m->key_len,
    };
    /* Parsed by librdkafka into the message, and freed with it at once. */
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    return consumer_msg_new(s, &f, hdrs);
}

void consumer_msg_destroy(consumer_msg_t *m)
{
    if (m == NULL)
        return;
    consumer_msg_chunk_t *c = m->chunk;
    if (c == NULL) {
        free(m);
        return;
    }
    if (--c->live == 0 && c->retired)
        release(c->owner, c);
}

const char *consumer_msg_header(const consumer_msg_t *m, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = m->nheaders; i-- > 0;) {
        const consumer_header_t *h = &m->headers[i];
        if (h->name_len == n && memcmp(h->name, name, n) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}
