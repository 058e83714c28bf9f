"""A small client for Superset's REST API, shared by tests/superset and bench/bench_superset.sh
(Python 3 stdlib only).

    s = epp_superset.Client("http://127.0.0.1:8088", "admin", "admin123")
    charts = s.dashboard_charts("epp-events")           # {slice_name: chart dict}
    status, body = s.chart_data(query_context)          # POST /api/v1/chart/data

Login is POST /api/v1/security/login (a bearer token); POSTs other than the login also carry the
CSRF token of /api/v1/security/csrf_token/ with the session cookie it comes with. Trailing
slashes matter to Superset's routes.

The CTest fixture `superset` (tests/superset/fixture.py) writes these keys into
BUILD/test-env/env: EPP_SUPERSET_URL, EPP_SUPERSET_USER, EPP_SUPERSET_PASSWORD,
EPP_SUPERSET_DB_URL (the database its events_db connection reads), EPP_SUPERSET_HOME.
"""

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request

DASHBOARD_SLUG = "epp-events"


class SupersetError(AssertionError):
    pass


class Client:
    def __init__(self, base, user, password, timeout=60.0):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        status, body = self.request("POST", "/api/v1/security/login",
                                    {"username": user, "password": password, "provider": "db",
                                     "refresh": True}, auth=False)
        if status != 200 or "access_token" not in body:
            raise SupersetError("login as %s: %s %r" % (user, status, body))
        self.token = body["access_token"]
        status, body = self.request("GET", "/api/v1/security/csrf_token/")
        if status != 200:
            raise SupersetError("csrf token: %s %r" % (status, body))
        self.csrf = body["result"]

    def request(self, method, path, body=None, auth=True, timeout=None):
        """(status, parsed JSON or text). HTTP errors are returned, not raised."""
        headers = {"Accept": "application/json", "Referer": self.base + "/"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Bearer " + self.token
            if method != "GET":
                headers["X-CSRFToken"] = self.csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=timeout or self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
            e.close()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path):
        status, body = self.request("GET", path)
        if status != 200:
            raise SupersetError("GET %s: %s %r" % (path, status, body))
        return body

    def list(self, resource, **filters):
        """Every row of GET /api/v1/<resource>/ whose columns equal filters (first 100 rows)."""
        q = {"page_size": 100}
        if filters:
            q["filters"] = [{"col": k, "opr": "eq", "value": v} for k, v in filters.items()]
        return self.get("/api/v1/%s/?q=%s" % (resource, urllib.parse.quote(_rison(q))))["result"]

    def dashboard_charts(self, slug=DASHBOARD_SLUG):
        """{slice_name: chart} for the dashboard's charts, each with its saved query_context
        parsed (None when there is none) and its form_data (params) parsed."""
        out = {}
        for c in self.get("/api/v1/dashboard/%s/charts" % slug)["result"]:
            full = self.get("/api/v1/chart/%d" % c["id"])["result"]
            full["query_context"] = json.loads(full["query_context"]) if full.get(
                "query_context") else None
            full["params"] = json.loads(full["params"]) if full.get("params") else {}
            full["id"] = c["id"]
            out[full["slice_name"]] = full
        return out

    def chart_data(self, query_context, timeout=None):
        """POST /api/v1/chart/data: (status, body)."""
        return self.request("POST", "/api/v1/chart/data", query_context, timeout=timeout)


def _rison(v):
    """Rison for the simple values the list filters need (dict, list, str, int, bool)."""
    if isinstance(v, bool):
        return "!t" if v else "!f"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return "'" + v.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(v, dict):
        return "(" + ",".join("%s:%s" % (k, _rison(x)) for k, x in v.items()) + ")"
    if isinstance(v, (list, tuple)):
        return "!(" + ",".join(_rison(x) for x in v) + ")"
    if v is None:
        return "!n"
    raise TypeError(type(v))


def with_time_range(query_context, time_range):
    """A copy of a saved query context asking for time_range ("A : B" in UTC, "No filter",
    "Last week"...) instead of the saved one: what the dashboard's time filter does."""
    qc = json.loads(json.dumps(query_context))
    qc["form_data"] = dict(qc.get("form_data") or {})
    for q in qc["queries"]:
        q["time_range"] = time_range
        for f in q.get("filters", []):
            if f.get("op") == "TEMPORAL_RANGE":
                f["val"] = time_range
    for f in qc["form_data"].get("adhoc_filters", []):
        if f.get("operator") == "TEMPORAL_RANGE":
            f["comparator"] = time_range
    qc["form_data"]["time_range"] = time_range
    qc["force"] = True
    return qc
