#include "consumer_merge.h"

#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"

typedef struct {
    consumer_msg_t *msg;
    int64_t from;
    int64_t pushed_us; /* monotonic */
} entry_t;

/* A partition's run of entries in the pool: keys[head, end) of the sorted order. */
typedef struct {
    size_t head, end;
} run_t;

struct consumer_merge {
    entry_t *e;
    size_t n, cap;
    size_t bytes;      /* payload bytes held */
    int64_t oldest_us; /* the oldest pushed_us held, 0 when empty */
    /* Scratch of take, kept between calls. */
    uint64_t *keys; /* partition << 32 | index: sorted, the pool grouped by partition in order */
    run_t *runs;
    size_t *heap; /* run indexes, a min-heap by the timestamp of each run's head entry */
    entry_t *tmp;
    size_t scratch_cap;
};

consumer_merge_t *consumer_merge_create(void)
{
    return calloc(1, sizeof(consumer_merge_t));
}

void consumer_merge_destroy(consumer_merge_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        consumer_msg_destroy(m->e[i].msg);
    free(m->e);
    free(m->keys);
    free(m->runs);
    free(m->heap);
    free(m->tmp);
    free(m);
}

int consumer_merge_push(consumer_merge_t *m, consumer_msg_t *msg, int64_t from, int64_t now_us)
{
    if (epp_grow(&m->e, &m->cap, m->n, sizeof *m->e, 1024) != 0) {
        consumer_msg_destroy(msg);
        return EPP_ENOMEM;
    }
    if (m->n == 0 || now_us < m->oldest_us)
        m->oldest_us = now_us;
    m->bytes += msg->len;
    m->e[m->n++] = (entry_t){msg, from, now_us};
    return 0;
}

size_t consumer_merge_count(const consumer_merge_t *m)
{
    return m->n;
}

size_t consumer_merge_bytes(const consumer_merge_t *m)
{
    return m->bytes;
}

int64_t consumer_merge_oldest_us(const consumer_merge_t *m)
{
    return m->n > 0 ? m->oldest_us : 0;
}

static int cmp_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* realloc that keeps p, and sets *rc, when it fails. */
static void *resize(void *p, size_t n, size_t size, int *rc)
{
    void *q = realloc(p, n * size);
    if (q == NULL) {
        *rc = EPP_ENOMEM;
        return p;
    }
    return q;
}

static int grow_scratch(consumer_merge_t *m)
{
    if (m->scratch_cap >= m->n)
        return 0;
    int rc = 0;
    m->keys = resize(m->keys, m->cap, sizeof *m->keys, &rc);
    m->runs = resize(m->runs, m->cap, sizeof *m->runs, &rc);
    m->heap = resize(m->heap, m->cap, sizeof *m->heap, &rc);
    m->tmp = resize(m->tmp, m->cap, sizeof *m->tmp, &rc);
    if (rc == 0)
        m->scratch_cap = m->cap;
    return rc;
}

static int64_t head_ts(const consumer_merge_t *m, size_t run)
{
    return m->e[(uint32_t)m->keys[m->runs[run].head]].msg->timestamp_ms;
}

/* Restores the heap property below position i. */
static void sift_down(consumer_merge_t *m, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        if (l < n && head_ts(m, m->heap[l]) < head_ts(m, m->heap[min]))
            min = l;
        if (r < n && head_ts(m, m->heap[r]) < head_ts(m, m->heap[min]))
            min = r;
        if (min == i)
            return;
        size_t t = m->heap[i];
        m->heap[i] = m->heap[min];
        m->heap[min] = t;
        i = min;
    }
}

int consumer_merge_take(consumer_merge_t *m, consumer_batch_t *b, size_t max_rows, size_t max_bytes)
{
    if (m->n == 0)
        return 0;
    if (grow_scratch(m) != 0)
        return EPP_ENOMEM;
    for (size_t i = 0; i < m->n; i++)
        m->keys[i] = (uint64_t)(uint32_t)m->e[i].msg->partition << 32 | (uint64_t)i;
    qsort(m->keys, m->n, sizeof *m->keys, cmp_key);
    size_t nruns = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (i == 0 || m->keys[i] >> 32 != m->keys[i - 1] >> 32)
            m->runs[nruns++] = (run_t){i, i};
        m->runs[nruns - 1].end = i + 1;
    }
    size_t nheap = nruns;
    for (size_t i = 0; i < nruns; i++)
        m->heap[i] = i;
    for (size_t i = nheap / 2; i-- > 0;)
        sift_down(m, nheap, i);
    int rc = 0;
    int64_t first_us = 0; /* the earliest push among the messages taken */
    while (nheap > 0 && b->n < max_rows && b->bytes < max_bytes) {
        run_t *run = &m->runs[m->heap[0]];
        entry_t *e = &m->e[(uint32_t)m->keys[run->head]];
        consumer_msg_t *msg = e->msg;
        e->msg = NULL;
        m->bytes -= msg->len;
        run->head++;
        if (run->head == run->end)
            m->heap[0] = m->heap[--nheap];
        sift_down(m, nheap, 0);
        if (first_us == 0 || e->pushed_us < first_us)
            first_us = e->pushed_us;
        if (consumer_batch_add(b, msg, e->from) != 0) {
            rc = EPP_ENOMEM;
            break;
        }
    }
    /* The batch's age counts from its first message's arrival, not from the take. */
    if (first_us != 0 && first_us < b->first_add_us)
        b->first_add_us = first_us;
    /* What is left, grouped by partition in offset order; later pushes append behind it. */
    size_t left = 0;
    m->oldest_us = 0;
    for (size_t i = 0; i < m->n; i++) {
        const entry_t *e = &m->e[(uint32_t)m->keys[i]];
        if (e->msg == NULL)
            continue;
        if (left == 0 || e->pushed_us < m->oldest_us)
            m->oldest_us = e->pushed_us;
        m->tmp[left++] = *e;
    }
    memcpy(m->e, m->tmp, left * sizeof *m->e);
    m->n = left;
    return rc;
}
