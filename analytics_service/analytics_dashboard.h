/* Static content served from the binary: the dashboard page, its scripts and styles, the
 * chart library's dist files (from npm at build time) and openapi.json. The bytes are embedded
 * at build time by embed.cmake; requests are answered by exact lookup in that fixed table, so no
 * request can reach the file system. */
#ifndef ANALYTICS_DASHBOARD_H
#define ANALYTICS_DASHBOARD_H

#include <stddef.h>

#include "epp_http.h"

typedef struct {
    const char *name; /* "uPlot.iife.min.js": the last segment of its URL */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} analytics_asset_t;

/* Generated (analytics_assets.c in the build directory). */
extern const analytics_asset_t analytics_assets[];
extern const size_t analytics_assets_count;

/* The asset called name, or NULL. */
const analytics_asset_t *analytics_asset_find(const char *name);

/* Adds GET /dashboard (and /dashboard/), GET /dashboard/assets/{name}, GET /openapi.json and GET /
 * (a redirect to the dashboard). These routes need no API key: they hold no data, and a browser
 * cannot send a key with a page load; the page asks for the key and sends it with its API calls. */
int analytics_dashboard_register(epp_http_server_t *srv);

#endif
