/* Routes serving the embedded assets; see analytics_dashboard.h. */
#include "analytics_dashboard.h"

#include <string.h>

#include "epp_error.h"

const analytics_asset_t *analytics_asset_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < analytics_assets_count; i++)
        if (strcmp(analytics_assets[i].name, name) == 0)
            return &analytics_assets[i];
    return NULL;
}

/* The page loads nothing from other origins; uPlot sets element styles from script. */
#define DASHBOARD_CSP                                                                              \
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "                 \
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

static void serve(epp_http_req_t *req, const char *name)
{
    const analytics_asset_t *a = analytics_asset_find(name);
    if (!a) {
        epp_http_reply_error(req, 404, "not_found", "no such asset", NULL, 0);
        return;
    }
    /* Assets change only with the binary; revalidation keeps a redeploy visible at once. */
    epp_http_add_header(req, "Cache-Control", "no-cache");
    epp_http_add_header(req, "X-Content-Type-Options", "nosniff");
    if (strcmp(a->content_type, "text/html; charset=utf-8") == 0)
        epp_http_add_header(req, "Content-Security-Policy", DASHBOARD_CSP);
    epp_http_reply(req, 200, a->content_type, (const char *)a->data, a->len);
}

static void h_page(epp_http_req_t *req, void *ud)
{
    (void)ud;
    serve(req, "index.html");
}

static void h_asset(epp_http_req_t *req, void *ud)
{
    (void)ud;
    const char *name = epp_http_path_param(req, "name");
    /* index.html and openapi.json have their own URLs. */
    if (name && (strcmp(name, "index.html") == 0 || strcmp(name, "openapi.json") == 0))
        name = NULL;
    serve(req, name);
}

static void h_openapi(epp_http_req_t *req, void *ud)
{
    (void)ud;
    serve(req, "openapi.json");
}

static void h_root(epp_http_req_t *req, void *ud)
{
    (void)ud;
    epp_http_add_header(req, "Location", "/dashboard");
    static const char body[] = "<a href=\"/dashboard\">/dashboard</a>\n";
    epp_http_reply(req, 302, "text/html; charset=utf-8", body, sizeof(body) - 1);
}

int analytics_dashboard_register(epp_http_server_t *srv)
{
    const unsigned flags = EPP_HTTP_ROUTE_PUBLIC | EPP_HTTP_ROUTE_NO_BODY;
    int rc = epp_http_route(srv, "GET", "/dashboard", h_page, NULL, flags);
    if (rc == 0)
        rc = epp_http_route(srv, "GET", "/dashboard/", h_page, NULL, flags);
    if (rc == 0)
        rc = epp_http_route(srv, "GET", "/dashboard/assets/{name}", h_asset, NULL, flags);
    if (rc == 0)
        rc = epp_http_route(srv, "GET", "/openapi.json", h_openapi, NULL, flags);
    if (rc == 0)
        rc = epp_http_route(srv, "GET", "/", h_root, NULL, flags);
    return rc;
}
