#include "consumer_positions.h"

#include <stdlib.h>

#include "epp_error.h"

struct consumer_positions {
    int64_t *pos; /* by partition id (ids are dense: 0 .. partition count - 1) */
    size_t n;
};

consumer_positions_t *consumer_positions_create(void)
{
    return calloc(1, sizeof(consumer_positions_t));
}

void consumer_positions_destroy(consumer_positions_t *ps)
{
    if (ps == NULL)
        return;
    free(ps->pos);
    free(ps);
}

int64_t consumer_positions_get(const consumer_positions_t *ps, int32_t partition)
{
    if (partition < 0 || (size_t)partition >= ps->n)
        return CONSUMER_POS_UNKNOWN;
    return ps->pos[partition];
}

int consumer_positions_set(consumer_positions_t *ps, int32_t partition, int64_t pos)
{
    if (partition < 0)
        return EPP_EINVAL;
    if ((size_t)partition >= ps->n) {
        if (pos == CONSUMER_POS_UNKNOWN)
            return 0;
        size_t n = (size_t)partition + 1;
        if (n < 2 * ps->n)
            n = 2 * ps->n;
        int64_t *p = realloc(ps->pos, n * sizeof *p);
        if (p == NULL)
            return EPP_ENOMEM;
        for (size_t i = ps->n; i < n; i++)
            p[i] = CONSUMER_POS_UNKNOWN;
        ps->pos = p;
        ps->n = n;
    }
    ps->pos[partition] = pos;
    return 0;
}

int64_t consumer_positions_advance(consumer_positions_t *ps, int32_t partition, int64_t offset)
{
    int64_t before = consumer_positions_get(ps, partition);
    /* From this message on the stream is complete. Without memory for the slot the position
     * stays unknown, which vouches for less: safe. */
    (void)consumer_positions_set(ps, partition, offset + 1);
    return before == CONSUMER_POS_UNKNOWN ? offset : before;
}
