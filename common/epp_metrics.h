/* Prometheus metrics: counters, gauges and histograms with labels, rendered in the text
 * exposition format (version 0.0.4).
 *
 * A family (name, help, type, label names) is registered once at start-up; a series is one
 * combination of label values, looked up (or created) under a lock -- callers look a series up
 * once and keep the pointer. Updating a series is lock-free (atomics) and safe from any thread:
 * that is the hot path. Rendering takes the registry lock and may run concurrently with updates.
 *
 * Names follow Prometheus conventions (epp_ prefix, base units, _total for counters,
 * _seconds for durations); labels are low-cardinality (route patterns, status codes, reasons). */
#ifndef EPP_METRICS_H
#define EPP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"

typedef struct epp_metrics epp_metrics_t;
typedef struct epp_metric epp_metric_t; /* a family */
typedef struct epp_series epp_series_t; /* one label combination of a family */

epp_metrics_t *epp_metrics_create(void);
/* Frees the registry and every family and series in it. Accepts NULL. */
void epp_metrics_destroy(epp_metrics_t *m);

/* Registers a family. label_names is a comma-separated list ("route,status") or NULL for none.
 * Returns the family (owned by the registry), or NULL on a bad name or allocation failure.
 * Registering the same name twice returns the existing family when its type matches. */
epp_metric_t *epp_metrics_counter(epp_metrics_t *m, const char *name, const char *help,
                                  const char *label_names);
epp_metric_t *epp_metrics_gauge(epp_metrics_t *m, const char *name, const char *help,
                                const char *label_names);
/* buckets: upper bounds, ascending, without +Inf (added automatically). Copied. */
epp_metric_t *epp_metrics_histogram(epp_metrics_t *m, const char *name, const char *help,
                                    const char *label_names, const double *buckets,
                                    size_t nbuckets);

/* Default latency buckets in seconds (0.0005 ... 10). */
extern const double epp_metrics_latency_buckets[];
extern const size_t epp_metrics_latency_buckets_n;

/* The series for these label values (one per label name, in order; values are escaped on
 * output). Takes the family lock; cache the result. Returns NULL on allocation failure. */
epp_series_t *epp_metric_series(epp_metric_t *family, ...);
/* Same with an array of values. */
epp_series_t *epp_metric_series_v(epp_metric_t *family, const char *const *values);
/* The series of a family without labels. */
epp_series_t *epp_metric_default(epp_metric_t *family);

/* Hot-path updates: lock-free, any thread. */
void epp_series_inc(epp_series_t *s);
void epp_series_add(epp_series_t *s, double v);     /* counters: v >= 0 */
void epp_series_set(epp_series_t *s, double v);     /* gauges */
void epp_series_observe(epp_series_t *s, double v); /* histograms */
double epp_series_value(const epp_series_t *s);     /* counters, gauges: current value */

/* A gauge computed when rendered (queue depth, lag...). fn is called under the registry lock
 * from the rendering thread; it must not call back into the registry. */
int epp_metrics_gauge_fn(epp_metrics_t *m, const char *name, const char *help,
                         double (*fn)(void *arg), void *arg);

/* Adds the standard process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds)
 * and epp_build_info{service,version} 1. */
int epp_metrics_add_process(epp_metrics_t *m, const char *service);

/* Appends the whole registry in the Prometheus text format. 0 or EPP_ENOMEM. */
int epp_metrics_render(epp_metrics_t *m, epp_buf_t *out);

#endif
