/* Prometheus metrics (see epp_metrics.h).
 *
 * Locking: the registry mutex guards the list of families (registration, rendering, destroy);
 * each family's mutex guards its list of series (lookup/creation, rendering). Rendering takes
 * the registry lock and then each family's lock in turn; nothing takes them in the other order.
 * Series values are C11 atomics, so updates never lock:
 *   - counters keep whole increments in an atomic integer (one fetch_add for epp_series_inc) and
 *     anything fractional in an atomic double;
 *   - gauges keep an atomic double (a uint64_t holding the bit pattern, updated by CAS);
 *   - histograms keep one atomic count per bucket (not cumulative; the +Inf bucket last) and an
 *     atomic double sum. _count is rendered as the total of the bucket counts read in the same
 *     pass, so a scrape never shows a +Inf bucket that disagrees with _count.
 * Series are never removed before epp_metrics_destroy(), so pointers handed out stay valid. */
#include "epp_metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"

#ifndef EPP_VERSION
#define EPP_VERSION "unknown"
#endif

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_FN } kind_t;

struct epp_series {
    epp_series_t *next;
    epp_metric_t *family;
    char **values;            /* one per label name; valid UTF-8 */
    _Atomic uint64_t ints;    /* counters: whole increments */
    _Atomic uint64_t bits;    /* double: counter fraction, gauge value, or histogram sum */
    _Atomic uint64_t *counts; /* histograms: nbounds + 1 per-bucket counts, +Inf last */
};

struct epp_metric {
    epp_metric_t *next;
    kind_t kind;
    const char *type; /* "counter", "gauge", "histogram" as rendered in # TYPE */
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    pthread_mutex_t lock;
    epp_series_t *series, **series_tail;
    /* KIND_FN: computed at render time, with a fixed label set rendered ahead ({k="v"}). */
    double (*fn)(void *arg);
    void *arg;
    char *fixed_labels;
};

struct epp_metrics {
    pthread_mutex_t lock;
    epp_metric_t *families, **tail;
    double process_start_time; /* seconds since the epoch, set by epp_metrics_add_process */
};

const double epp_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t epp_metrics_latency_buckets_n =
    sizeof epp_metrics_latency_buckets / sizeof epp_metrics_latency_buckets[0];

/* ---- small helpers --------------------------------------------------------------------- */

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static bool valid_metric_name(const char *s)
{
    if (!s || !(*s == '_' || *s == ':' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (s++; *s; s++)
        if (!(*s == '_' || *s == ':' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, and not the reserved "__" prefix. */
static bool valid_label_name(const char *s, size_t len)
{
    if (len == 0 || (len >= 2 && s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool utf8_valid(const char *s)
{
    return epp_json_utf8_valid(s, strlen(s));
}

/* A malloc'd copy of s with every byte that is not valid UTF-8 replaced by U+FFFD: Prometheus
 * rejects a whole scrape over one bad label value. */
static char *utf8_dup(const char *s)
{
    if (utf8_valid(s))
        return strdup(s);
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    char *o = out;
    const char *end = s + n;
    for (const char *p = s; p < end;) {
        size_t len = epp_json_utf8_seq(p, (size_t)(end - p));
        if (len) {
            memcpy(o, p, len);
            o += len;
            p += len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

/* Formats a sample value or bucket bound the way Prometheus parses it: integers without an
 * exponent, other values in the shortest form that reads back exactly, and +Inf, -Inf, NaN. */
static void format_value(char *out, size_t outsz, double v)
{
    if (isnan(v)) {
        snprintf(out, outsz, "NaN");
    } else if (isinf(v)) {
        snprintf(out, outsz, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, outsz, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, outsz, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* ---- registry and families ------------------------------------------------------------- */

epp_metrics_t *epp_metrics_create(void)
{
    epp_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->families;
    return m;
}

static void series_free(epp_series_t *s, size_t nlabels)
{
    if (!s)
        return;
    if (s->values)
        for (size_t i = 0; i < nlabels; i++)
            free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void family_free(epp_metric_t *f)
{
    if (!f)
        return;
    for (epp_series_t *s = f->series, *next; s; s = next) {
        next = s->next;
        series_free(s, f->nlabels);
    }
    if (f->labels)
        for (size_t i = 0; i < f->nlabels; i++)
            free(f->labels[i]);
    free(f->labels);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f->fixed_labels);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void epp_metrics_destroy(epp_metrics_t *m)
{
    if (!m)
        return;
    for (epp_metric_t *f = m->families, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Splits "route, status" into f->labels. Returns false on a bad or repeated name. */
static bool parse_label_names(epp_metric_t *f, const char *label_names)
{
    if (!label_names || !*label_names)
        return true;
    size_t n = 1;
    for (const char *p = label_names; *p; p++)
        n += *p == ',';
    f->labels = calloc(n, sizeof *f->labels);
    if (!f->labels)
        return false;
    const char *p = label_names;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (!valid_label_name(a, (size_t)(b - a)))
            return false;
        if (f->kind == KIND_HISTOGRAM && b - a == 2 && memcmp(a, "le", 2) == 0)
            return false;
        f->labels[i] = strndup(a, (size_t)(b - a));
        if (!f->labels[i])
            return false;
        f->nlabels = i + 1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->labels[j], f->labels[i]) == 0)
                return false;
        p = end + 1;
    }
    return true;
}

/* Escapes HELP text: backslash and newline. */
static int append_help(epp_buf_t *out, const char *s)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        if (*s == '\\')
            rc = epp_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            rc = epp_buf_append(out, "\\n", 2);
        else
            rc = epp_buf_append_char(out, *s);
    }
    return rc;
}

/* Escapes a label value: backslash, double quote and newline. */
static int append_label_value(epp_buf_t *out, const char *s)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        if (*s == '\\')
            rc = epp_buf_append(out, "\\\\", 2);
        else if (*s == '"')
            rc = epp_buf_append(out, "\\\"", 2);
        else if (*s == '\n')
            rc = epp_buf_append(out, "\\n", 2);
        else
            rc = epp_buf_append_char(out, *s);
    }
    return rc;
}

static epp_metric_t *find_family(epp_metrics_t *m, const char *name)
{
    for (epp_metric_t *f = m->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static bool same_shape(const epp_metric_t *a, const epp_metric_t *b)
{
    if (a->kind != b->kind || a->nlabels != b->nlabels || a->nbounds != b->nbounds)
        return false;
    for (size_t i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->nbounds; i++)
        if (a->bounds[i] != b->bounds[i])
            return false;
    return true;
}

static epp_series_t *series_new(epp_metric_t *f, const char *const *values)
{
    epp_series_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->family = f;
    atomic_init(&s->ints, 0);
    atomic_init(&s->bits, double_to_bits(0.0));
    if (f->nlabels) {
        s->values = calloc(f->nlabels, sizeof *s->values);
        if (!s->values)
            goto fail;
        for (size_t i = 0; i < f->nlabels; i++) {
            s->values[i] = utf8_dup(values && values[i] ? values[i] : "");
            if (!s->values[i])
                goto fail;
        }
    }
    if (f->kind == KIND_HISTOGRAM) {
        s->counts = calloc(f->nbounds + 1, sizeof *s->counts);
        if (!s->counts)
            goto fail;
        for (size_t i = 0; i <= f->nbounds; i++)
            atomic_init(&s->counts[i], 0);
    }
    return s;
fail:
    series_free(s, f->nlabels);
    return NULL;
}

/* Builds a family, or returns NULL on a bad definition or allocation failure. */
static epp_metric_t *family_new(kind_t kind, const char *type, const char *name, const char *help,
                                const char *label_names, const double *buckets, size_t nbuckets)
{
    if (!valid_metric_name(name))
        return NULL;
    epp_metric_t *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->kind = kind;
    f->type = type;
    f->series_tail = &f->series;
    f->name = strdup(name);
    f->help = utf8_dup(help ? help : "");
    if (!f->name || !f->help || !parse_label_names(f, label_names))
        goto fail;
    if (kind == KIND_HISTOGRAM) {
        if (nbuckets > 0 && !buckets)
            goto fail;
        f->bounds = malloc((nbuckets ? nbuckets : 1) * sizeof *f->bounds);
        if (!f->bounds)
            goto fail;
        for (size_t i = 0; i < nbuckets; i++) {
            /* ascending, finite; +Inf is implicit */
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                goto fail;
            f->bounds[i] = buckets[i];
        }
        f->nbounds = nbuckets;
    }
    /* A family without labels has exactly one series: create it now so it is rendered (as 0)
     * from the first scrape, before anything happened. */
    if (f->nlabels == 0 && kind != KIND_FN) {
        f->series = series_new(f, NULL);
        if (!f->series)
            goto fail;
        f->series_tail = &f->series->next;
    }
    return f;
fail:
    family_free(f);
    return NULL;
}

static epp_metric_t *register_family(epp_metrics_t *m, kind_t kind, const char *type,
                                     const char *name, const char *help, const char *label_names,
                                     const double *buckets, size_t nbuckets)
{
    if (!m)
        return NULL;
    epp_metric_t *f = family_new(kind, type, name, help, label_names, buckets, nbuckets);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m->lock);
    epp_metric_t *old = find_family(m, name);
    if (old) {
        epp_metric_t *keep = same_shape(old, f) ? old : NULL;
        pthread_mutex_unlock(&m->lock);
        family_free(f);
        return keep;
    }
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->lock);
    /* promtool (and Prometheus conventions) want counters named *_total; say so at start-up
     * rather than at the first scrape check. */
    size_t len = strlen(name);
    if (kind == KIND_COUNTER && (len < 6 || strcmp(name + len - 6, "_total") != 0))
        EPP_WARN("metric %s is a counter but its name does not end in _total", name);
    return f;
}

epp_metric_t *epp_metrics_counter(epp_metrics_t *m, const char *name, const char *help,
                                  const char *label_names)
{
    return register_family(m, KIND_COUNTER, "counter", name, help, label_names, NULL, 0);
}

epp_metric_t *epp_metrics_gauge(epp_metrics_t *m, const char *name, const char *help,
                                const char *label_names)
{
    return register_family(m, KIND_GAUGE, "gauge", name, help, label_names, NULL, 0);
}

epp_metric_t *epp_metrics_histogram(epp_metrics_t *m, const char *name, const char *help,
                                    const char *label_names, const double *buckets, size_t nbuckets)
{
    return register_family(m, KIND_HISTOGRAM, "histogram", name, help, label_names, buckets,
                           nbuckets);
}

/* Registers a computed metric. fixed_labels is NULL or a NULL-terminated list of name, value
 * pairs. Registering the same name again replaces the function (add_process stays idempotent). */
static int register_fn(epp_metrics_t *m, const char *type, const char *name, const char *help,
                       double (*fn)(void *), void *arg, const char *const *fixed_labels)
{
    if (!m || !fn || !valid_metric_name(name))
        return EPP_EINVAL;
    epp_buf_t labels = {0};
    int rc = 0;
    if (fixed_labels && fixed_labels[0]) {
        rc |= epp_buf_append_char(&labels, '{');
        for (size_t i = 0; fixed_labels[i]; i += 2) {
            const char *value = fixed_labels[i + 1] ? fixed_labels[i + 1] : "";
            char *clean = utf8_dup(value);
            if (!valid_label_name(fixed_labels[i], strlen(fixed_labels[i])) || !clean) {
                free(clean);
                epp_buf_free(&labels);
                return clean ? EPP_EINVAL : EPP_ENOMEM;
            }
            rc |= epp_buf_printf(&labels, "%s%s=\"", i ? "," : "", fixed_labels[i]);
            rc |= append_label_value(&labels, clean);
            rc |= epp_buf_append_char(&labels, '"');
            free(clean);
        }
        rc |= epp_buf_append_char(&labels, '}');
    }
    epp_metric_t *f = rc ? NULL : family_new(KIND_FN, type, name, help, NULL, NULL, 0);
    if (!f) { /* the name was checked above, so this is memory */
        epp_buf_free(&labels);
        return EPP_ENOMEM;
    }
    f->fn = fn;
    f->arg = arg;
    f->fixed_labels = labels.len ? epp_buf_steal(&labels) : NULL;
    epp_buf_free(&labels);

    pthread_mutex_lock(&m->lock);
    epp_metric_t *old = find_family(m, name);
    if (old) {
        rc = 0;
        if (old->kind == KIND_FN && strcmp(old->type, type) == 0) {
            /* Swap the definition in place; rendering holds this lock, so it is not running. */
            old->fn = fn;
            old->arg = arg;
            char *tmp = old->fixed_labels;
            old->fixed_labels = f->fixed_labels;
            f->fixed_labels = tmp;
        } else {
            rc = EPP_EINVAL;
        }
        pthread_mutex_unlock(&m->lock);
        family_free(f);
        return rc;
    }
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int epp_metrics_gauge_fn(epp_metrics_t *m, const char *name, const char *help,
                         double (*fn)(void *arg), void *arg)
{
    return register_fn(m, "gauge", name, help, fn, arg, NULL);
}

/* ---- series ---------------------------------------------------------------------------- */

static bool values_match(const epp_series_t *s, size_t n, const char *const *values)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

epp_series_t *epp_metric_series_v(epp_metric_t *f, const char *const *values)
{
    if (!f || f->kind == KIND_FN)
        return NULL;
    /* Compare in the stored form: NULL as "", invalid UTF-8 repaired. The label count is fixed
     * when the family is made. */
    const size_t n = f->nlabels;
    const char *stack_vals[8] = {0};
    char *stack_owned[8];
    const char **vals = stack_vals;
    char **owned = stack_owned;
    if (n > 8) {
        vals = calloc(n, sizeof *vals);
        owned = calloc(n, sizeof *owned);
        if (!vals || !owned) {
            free(vals);
            free(owned);
            return NULL;
        }
    }
    epp_series_t *s = NULL;
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        const char *v = values && values[i] ? values[i] : "";
        owned[i] = NULL;
        if (!oom && !utf8_valid(v)) {
            owned[i] = utf8_dup(v);
            oom = owned[i] == NULL;
            v = owned[i];
        }
        vals[i] = v;
    }
    if (!oom) {
        pthread_mutex_lock(&f->lock);
        for (s = f->series; s; s = s->next)
            if (values_match(s, n, vals))
                break;
        if (!s) {
            s = series_new(f, vals);
            if (s) {
                *f->series_tail = s;
                f->series_tail = &s->next;
            }
        }
        pthread_mutex_unlock(&f->lock);
    }
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    if (vals != stack_vals) {
        free(vals);
        free(owned);
    }
    return s;
}

epp_series_t *epp_metric_series(epp_metric_t *f, ...)
{
    if (!f)
        return NULL;
    const char *stack_vals[8] = {0};
    const char **vals = stack_vals;
    if (f->nlabels > 8) {
        vals = calloc(f->nlabels, sizeof *vals);
        if (!vals)
            return NULL;
    }
    va_list ap;
    va_start(ap, f);
    for (size_t i = 0; i < f->nlabels; i++)
        vals[i] = va_arg(ap, const char *);
    va_end(ap);
    epp_series_t *s = epp_metric_series_v(f, vals);
    if (vals != stack_vals)
        free(vals);
    return s;
}

epp_series_t *epp_metric_default(epp_metric_t *f)
{
    /* Created with the family; NULL for labelled families (a programmer error). */
    if (!f || f->nlabels != 0)
        return NULL;
    return f->series;
}

void epp_series_inc(epp_series_t *s)
{
    if (!s)
        return;
    if (s->family->kind == KIND_COUNTER)
        atomic_fetch_add_explicit(&s->ints, 1, memory_order_relaxed);
    else if (s->family->kind == KIND_GAUGE)
        atomic_add_double(&s->bits, 1.0);
}

void epp_series_add(epp_series_t *s, double v)
{
    if (!s || isnan(v))
        return;
    if (s->family->kind == KIND_COUNTER) {
        if (v < 0) /* counters only go up; ignoring keeps rate() sane */
            return;
        if (v == floor(v) && v < 9007199254740992.0) /* 2^53: exact as an integer */
            atomic_fetch_add_explicit(&s->ints, (uint64_t)v, memory_order_relaxed);
        else
            atomic_add_double(&s->bits, v);
    } else if (s->family->kind == KIND_GAUGE) {
        atomic_add_double(&s->bits, v);
    }
}

void epp_series_set(epp_series_t *s, double v)
{
    if (!s || s->family->kind == KIND_HISTOGRAM)
        return;
    /* Counters may be set too, to mirror a total kept elsewhere (librdkafka statistics). */
    atomic_store_explicit(&s->bits, double_to_bits(v), memory_order_relaxed);
    atomic_store_explicit(&s->ints, 0, memory_order_relaxed);
}

void epp_series_observe(epp_series_t *s, double v)
{
    if (!s || s->family->kind != KIND_HISTOGRAM || isnan(v))
        return;
    const epp_metric_t *f = s->family;
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

double epp_series_value(const epp_series_t *s)
{
    if (!s)
        return 0;
    epp_series_t *w = (epp_series_t *)s; /* atomic loads need a non-const object in C17 */
    if (s->family->kind == KIND_HISTOGRAM) {
        uint64_t n = 0;
        for (size_t i = 0; i <= s->family->nbounds; i++)
            n += atomic_load_explicit(&w->counts[i], memory_order_relaxed);
        return (double)n;
    }
    return (double)atomic_load_explicit(&w->ints, memory_order_relaxed) +
           bits_to_double(atomic_load_explicit(&w->bits, memory_order_relaxed));
}

/* ---- rendering ------------------------------------------------------------------------- */

/* Appends name{labels[,le="bound"]} (braces omitted when there is nothing inside). */
static int append_series_name(epp_buf_t *out, const epp_metric_t *f, const char *suffix,
                              const epp_series_t *s, const char *le)
{
    int rc = epp_buf_append_str(out, f->name);
    rc |= epp_buf_append_str(out, suffix);
    if (f->nlabels == 0 && !le)
        return rc;
    rc |= epp_buf_append_char(out, '{');
    for (size_t i = 0; i < f->nlabels; i++) {
        rc |= epp_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        rc |= append_label_value(out, s->values[i]);
        rc |= epp_buf_append_char(out, '"');
    }
    if (le)
        rc |= epp_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    rc |= epp_buf_append_char(out, '}');
    return rc;
}

static int append_sample(epp_buf_t *out, double v)
{
    char num[40];
    format_value(num, sizeof num, v);
    return epp_buf_printf(out, " %s\n", num);
}

static int render_histogram(epp_buf_t *out, const epp_metric_t *f, epp_series_t *s)
{
    int rc = 0;
    uint64_t cumulative = 0;
    char le[40];
    for (size_t i = 0; i <= f->nbounds; i++) {
        cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        if (i < f->nbounds)
            format_value(le, sizeof le, f->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        rc |= append_series_name(out, f, "_bucket", s, le);
        rc |= epp_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    }
    rc |= append_series_name(out, f, "_sum", s, NULL);
    rc |= append_sample(out, bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed)));
    rc |= append_series_name(out, f, "_count", s, NULL);
    rc |= epp_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    return rc;
}

static int render_family(epp_buf_t *out, epp_metric_t *f)
{
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    if (f->kind != KIND_FN && !f->series) {
        pthread_mutex_unlock(&f->lock); /* a labelled family nobody used yet */
        return 0;
    }
    rc |= epp_buf_printf(out, "# HELP %s ", f->name);
    rc |= append_help(out, f->help);
    rc |= epp_buf_printf(out, "\n# TYPE %s %s\n", f->name, f->type);
    if (f->kind == KIND_FN) {
        rc |= epp_buf_append_str(out, f->name);
        if (f->fixed_labels)
            rc |= epp_buf_append_str(out, f->fixed_labels);
        rc |= append_sample(out, f->fn(f->arg));
    } else {
        for (epp_series_t *s = f->series; s && rc == 0; s = s->next) {
            if (f->kind == KIND_HISTOGRAM) {
                rc |= render_histogram(out, f, s);
            } else {
                rc |= append_series_name(out, f, "", s, NULL);
                rc |= append_sample(out, epp_series_value(s));
            }
        }
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

int epp_metrics_render(epp_metrics_t *m, epp_buf_t *out)
{
    if (!m)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (epp_metric_t *f = m->families; f && rc == 0; f = f->next)
        rc = render_family(out, f);
    pthread_mutex_unlock(&m->lock);
    return rc ? EPP_ENOMEM : 0;
}

/* ---- process metrics ------------------------------------------------------------------- */

/* Reads a small /proc file into buf (NUL-terminated). Returns the length, or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, size - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Field number `field` (1-based, as in proc(5)) of /proc/self/stat, or NaN. The command name
 * (field 2) may hold spaces and parentheses, so counting starts after its last ')'. */
static double proc_stat_field(int field)
{
    char buf[1024];
    if (read_proc("/proc/self/stat", buf, sizeof buf) <= 0)
        return NAN;
    char *p = strrchr(buf, ')');
    if (!p)
        return NAN;
    p++;
    for (int i = 3; i <= field; i++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return NAN;
        if (i == field)
            return strtod(p, NULL);
        while (*p && *p != ' ')
            p++;
    }
    return NAN;
}

static double process_cpu_seconds(void *arg)
{
    (void)arg;
    double ticks = proc_stat_field(14) + proc_stat_field(15); /* utime + stime */
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* Field `index` (0-based) of /proc/self/statm, in bytes. */
static double statm_bytes(int index)
{
    char buf[256];
    if (read_proc("/proc/self/statm", buf, sizeof buf) <= 0)
        return NAN;
    char *p = buf;
    for (int i = 0; i < index; i++) {
        strtoull(p, &p, 10);
    }
    return (double)strtoull(p, NULL, 10) * (double)sysconf(_SC_PAGESIZE);
}

static double process_resident_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(1);
}

static double process_virtual_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(0);
}

static double process_open_fds(void *arg)
{
    (void)arg;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    int self = dirfd(d);
    double n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char *end = NULL;
        if (strtol(e->d_name, &end, 10) == self && *end == '\0') /* this listing's own */
            continue;
        n++;
    }
    closedir(d);
    return n;
}

static double process_max_fds(void *arg)
{
    (void)arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double process_start_time(void *arg)
{
    return ((epp_metrics_t *)arg)->process_start_time;
}

static double one(void *arg)
{
    (void)arg;
    return 1;
}

/* Boot time (btime in /proc/stat) plus the process start in clock ticks after boot. */
static double compute_start_time(void)
{
    FILE *fp = fopen("/proc/stat", "re");
    if (!fp)
        return NAN;
    char *line = NULL;
    size_t cap = 0;
    double btime = NAN;
    while (getline(&line, &cap, fp) > 0) {
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    }
    free(line);
    fclose(fp);
    return btime + proc_stat_field(22) / (double)sysconf(_SC_CLK_TCK);
}

int epp_metrics_add_process(epp_metrics_t *m, const char *service)
{
    if (!m)
        return EPP_EINVAL;
    m->process_start_time = compute_start_time();
    const char *const build_labels[] = {"service", service ? service : "", "version", EPP_VERSION,
                                        NULL};
    int rc = register_fn(m, "counter", "process_cpu_seconds_total",
                         "Total user and system CPU time spent in seconds.", process_cpu_seconds,
                         NULL, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "process_resident_memory_bytes",
                         "Resident memory size in bytes.", process_resident_bytes, NULL, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "process_virtual_memory_bytes",
                         "Virtual memory size in bytes.", process_virtual_bytes, NULL, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "process_open_fds", "Number of open file descriptors.",
                         process_open_fds, NULL, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "process_max_fds", "Maximum number of open file descriptors.",
                         process_max_fds, NULL, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "process_start_time_seconds",
                         "Start time of the process since unix epoch in seconds.",
                         process_start_time, m, NULL);
    if (!rc)
        rc = register_fn(m, "gauge", "epp_build_info",
                         "Build information: the service name and version; always 1.", one, NULL,
                         build_labels);
    return rc;
}
