/* What the libFuzzer targets of tests/fuzz share: REQUIRE, which aborts on a violated property
 * (libFuzzer reports it as a crash, the replay build as a failed test), and the property every
 * event a parser accepts must have. Included by each fuzz_<name>.c. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_event.h"

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A valid event's canonical form (the Kafka message) reads back in Kafka mode, same event_id. */
static inline void fuzz_check_canonical(const epp_event_t *ev, int64_t now_us)
{
    epp_buf_t canon = {0};
    REQUIRE(epp_event_serialize(ev, &canon) == 0);
    epp_event_t back;
    epp_event_error_t berr;
    epp_event_init(&back);
    REQUIRE(epp_event_parse(canon.data, canon.len, EPP_EVENT_FROM_KAFKA, now_us, &back, &berr) ==
            0);
    REQUIRE(memcmp(&back.event_id, &ev->event_id, sizeof back.event_id) == 0);
    epp_event_clear(&back);
    epp_buf_free(&canon);
}

#endif
