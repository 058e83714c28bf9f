#include "send_evgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_rand.h"
#include "epp_time.h"

void epp_evgen_free(epp_evgen_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_names; i++)
        free(g->names[i]);
    free(g->names);
    free(g->user_prefix);
    free(g->marker);
    memset(g, 0, sizeof(*g));
}

int epp_evgen_init(epp_evgen_t *g, const char *names_csv, const char *user_prefix, int64_t users,
                   const char *marker, uint64_t seed, char *err, size_t errsz)
{
    memset(g, 0, sizeof(*g));
    if (users < 1) {
        snprintf(err, errsz, "users must be at least 1");
        return EPP_EINVAL;
    }
    if (!names_csv || !*names_csv)
        names_csv = EPP_EVGEN_DEFAULT_NAMES;
    g->users = users;
    g->user_prefix = strdup(user_prefix ? user_prefix : "");
    if (!g->user_prefix)
        goto nomem;
    if (marker && *marker) {
        g->marker = strdup(marker);
        if (!g->marker)
            goto nomem;
    }
    const char *p = names_csv;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 256 || !epp_json_utf8_valid(p, len)) {
            snprintf(err, errsz, "event names must be non-empty UTF-8 of at most 256 bytes: '%s'",
                     names_csv);
            epp_evgen_free(g);
            return EPP_EINVAL;
        }
        char **names = realloc(g->names, (g->n_names + 1) * sizeof(*names));
        if (!names)
            goto nomem;
        g->names = names;
        g->names[g->n_names] = strndup(p, len);
        if (!g->names[g->n_names])
            goto nomem;
        g->n_names++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (seed == 0)
        seed = (uint64_t)epp_time_mono_us() ^ ((uint64_t)epp_time_now_us() << 20);
    g->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
    return 0;
nomem:
    epp_evgen_free(g);
    snprintf(err, errsz, "out of memory");
    return EPP_ENOMEM;
}

uint64_t epp_evgen_rand(epp_evgen_t *g)
{
    return epp_rand_next(&g->rng);
}

static unsigned rnd(epp_evgen_t *g, unsigned n)
{
    return (unsigned)(epp_evgen_rand(g) % n);
}

/* Metadata shaped by the event name, so that dashboards and Superset show something plausible.
 * Amounts are written from integer cents so that the JSON number text is always valid. */
static int append_metadata(epp_evgen_t *g, const char *name, epp_buf_t *out)
{
    static const char *const sources[] = {"search", "ads", "email", "direct", "social"};
    static const char *const currencies[] = {"EUR", "USD", "GBP"};
    static const char *const queries[] = {"shoes", "red dress", "laptop 14", "coffee", "tent"};
    int rc;
    if (strcmp(name, "purchase") == 0) {
        unsigned cents = 100 + rnd(g, 49900);
        rc = epp_buf_printf(out,
                            "{\"order_id\":\"o-%06u\",\"amount\":%u.%02u,\"currency\":\"%s\","
                            "\"items\":%u",
                            rnd(g, 1000000), cents / 100, cents % 100, currencies[rnd(g, 3)],
                            1 + rnd(g, 5));
    } else if (strcmp(name, "add_to_cart") == 0) {
        unsigned cents = 99 + rnd(g, 9900);
        rc = epp_buf_printf(out, "{\"product_id\":\"sku-%04u\",\"quantity\":%u,\"price\":%u.%02u",
                            rnd(g, 10000), 1 + rnd(g, 3), cents / 100, cents % 100);
    } else if (strcmp(name, "search") == 0) {
        rc = epp_buf_printf(out, "{\"query\":\"%s\",\"results\":%u", queries[rnd(g, 5)],
                            rnd(g, 200));
    } else if (strcmp(name, "signup") == 0) {
        rc = epp_buf_printf(out, "{\"plan\":\"%s\",\"source\":\"%s\"", rnd(g, 4) ? "free" : "pro",
                            sources[rnd(g, 5)]);
    } else if (strcmp(name, "login") == 0 || strcmp(name, "logout") == 0) {
        rc = epp_buf_printf(out, "{\"method\":\"%s\",\"session_s\":%u",
                            rnd(g, 3) ? "password" : "sso", rnd(g, 7200));
    } else if (strcmp(name, "click") == 0) {
        rc = epp_buf_printf(out, "{\"page\":\"/p/%u\",\"element\":\"btn-%u\"", rnd(g, 100),
                            rnd(g, 20));
    } else {
        rc = epp_buf_printf(out, "{\"page\":\"/p/%u\",\"referrer\":\"%s\"", rnd(g, 100),
                            sources[rnd(g, 5)]);
    }
    if (rc == 0 && g->marker) {
        rc = epp_buf_append_str(out, ",\"epp_test\":");
        if (rc == 0)
            rc = epp_json_write_string(out, g->marker, strlen(g->marker));
    }
    if (rc == 0)
        rc = epp_buf_append_char(out, '}');
    return rc;
}

int epp_evgen_event(epp_evgen_t *g, uint64_t i, const char *event_id, int64_t ts_us, epp_buf_t *out)
{
    const char *name = g->names[rnd(g, (unsigned)g->n_names)];
    char user[320];
    int ulen = snprintf(user, sizeof(user), "%s%llu", g->user_prefix,
                        (unsigned long long)(i % (uint64_t)g->users));
    if (ulen < 0 || (size_t)ulen >= sizeof(user))
        ulen = (int)sizeof(user) - 1;
    int rc = epp_buf_append_char(out, '{');
    if (rc == 0 && event_id)
        rc = epp_buf_printf(out, "\"event_id\":\"%s\",", event_id);
    if (rc == 0)
        rc = epp_buf_append_str(out, "\"user_id\":");
    if (rc == 0)
        rc = epp_json_write_string(out, user, (size_t)ulen);
    if (rc == 0)
        rc = epp_buf_append_str(out, ",\"event_name\":");
    if (rc == 0)
        rc = epp_json_write_string(out, name, strlen(name));
    if (rc == 0 && ts_us) {
        char ts[EPP_TIME_BUFSZ];
        epp_time_format(ts_us, ts);
        rc = epp_buf_printf(out, ",\"timestamp\":\"%s\"", ts);
    }
    if (rc == 0)
        rc = epp_buf_append_str(out, ",\"metadata\":");
    if (rc == 0)
        rc = append_metadata(g, name, out);
    if (rc == 0)
        rc = epp_buf_append_char(out, '}');
    return rc;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

char *epp_evgen_resolve_url(const char *url, int batch)
{
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    /* Strip a known route to get the base, then add the route wanted. */
    if (ends_with(url, len, "/events/batch"))
        len -= strlen("/events/batch");
    else if (ends_with(url, len, "/events"))
        len -= strlen("/events");
    const char *route = batch ? "/events/batch" : "/events";
    size_t size = len + strlen(route) + 1;
    char *res = malloc(size);
    if (!res)
        return NULL;
    snprintf(res, size, "%.*s%s", (int)len, url, route);
    return res;
}
