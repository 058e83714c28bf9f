/* The consumer's maintenance thread: every MAINTENANCE_INTERVAL_S it runs the partition and
 * retention maintenance of public.events (common/epp_maintain.h) on its own connection --
 * creating day partitions ahead, dropping those past EVENTS_RETENTION, purging rollups past
 * ROLLUP_RETENTION. Several consumers may run it: one run at a time holds the database's
 * advisory lock, the others skip that round.
 *
 * Why the consumer owns it: it is the one service that must run for events to be stored, and it
 * applies the migrations, so a database that receives events is also maintained, with no
 * scheduler to set up (docs/scaling.md, "Retention").
 *
 * Threads: create, start and destroy from the main thread; the run itself is on the thread this
 * module starts. */
#ifndef CONSUMER_MAINTAIN_H
#define CONSUMER_MAINTAIN_H

#include <signal.h>

#include "consumer_config.h"
#include "epp_maintain.h"
#include "epp_metrics.h"

typedef struct consumer_maintain consumer_maintain_t;

/* conf, opts and reg are borrowed and must outlive the object. The metrics
 * epp_consumer_maintenance_steps_total{action}, epp_consumer_maintenance_failures_total and
 * epp_consumer_maintenance_last_success_timestamp_seconds are registered in reg. NULL on
 * allocation failure. */
consumer_maintain_t *consumer_maintain_create(const consumer_conf_t *conf,
                                              const epp_maintain_opts_t *opts, epp_metrics_t *reg);

/* Starts the thread; its first run is at once. 0 or EPP_ENOMEM. */
int consumer_maintain_start(consumer_maintain_t *cm);

/* Stops the thread (cancelling a statement in progress: every step is its own transaction, so
 * a cancelled one leaves nothing half done) and frees everything. Accepts NULL. */
void consumer_maintain_destroy(consumer_maintain_t *cm);

#endif
