"""epp-analytics traces, checked by the OTLP test receiver (otlp_receiver.py):

1. A request with a client traceparent is a SERVER span in the client's trace, child of the
   client's span, with the HTTP attributes (method, route, path, status code, port); its SQL
   statement is a CLIENT child span with db.system, db.namespace, db.operation.name and the
   parameterised db.query.text (no values). A 400 is a span without error status and without
   a query; a 503 (database down) is a span with status ERROR. Every payload passes the OTLP
   JSON mapping checks, and epp_otel_spans_exported_total counts what arrived.
2. OTEL_TRACES_SAMPLER_ARG=0: new traces export nothing (parent-based: a client's sampled
   traceparent still is, under the OTEL_SERVICE_NAME given).
3. The collector at a closed port, and a collector that accepts and never answers (and, for
   reference, a healthy one): requests
   still succeed with the latency of tracing off (medians, generous bound; no request stalls),
   and
   epp_otel_spans_dropped_total rises.

Usage: test_traces_analytics.py BUILD_DIR (needs the pg fixture)."""
import os
import statistics
import sys
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import epp_testlib as t  # noqa: E402
from otlp_receiver import OtlpReceiver  # noqa: E402

F, T = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
RANGE = {"from_ts": F, "to_ts": "2026-03-01T12:34:56.5Z"}

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def start(env, db_url, extra, name):
    e = {"DATABASE_URL": db_url, "LOG_LEVEL": "warn", "HTTP_BIND_ADDRESS": "127.0.0.1",
         "HTTP_THREADS": "2"}
    e.update(extra)
    return t.start_process(env, "epp-analytics", port=t.free_port(), extra_env=e,
                           log_name=t.unique_name(name))


def get(svc, path, params=None, headers=None):
    url = svc.url(path) + ("?" + urllib.parse.urlencode(params) if params else "")
    return t.http_request("GET", url, headers=headers, timeout=20)


def metric(svc, name, labels=None):
    return t.metric_value(svc, name, labels, default=0.0)


def new_ids():
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


def traceparent(trace_id, span_id, flags="01"):
    return "00-%s-%s-%s" % (trace_id, span_id, flags)


def check_spans(env, db_url, db_name):
    with OtlpReceiver() as rx:
        svc = start(env, db_url, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}, "traces-ok")
        try:
            calls = [  # (path, params, route, status, statement span name)
                ("/analytics/events/count", RANGE, "/analytics/events/count", 200, "SELECT count"),
                ("/analytics/events/count", dict(RANGE, user_id="u1"), "/analytics/events/count",
                 200, "SELECT count_user"),
                ("/analytics/events/timeseries", dict(RANGE, interval="hour"),
                 "/analytics/events/timeseries", 200, "SELECT timeseries"),
                ("/analytics/events/top", RANGE, "/analytics/events/top", 200, "SELECT top"),
                ("/analytics/users/active", RANGE, "/analytics/users/active", 200,
                 "SELECT active_users"),
                ("/analytics/users/u1/events", {"limit": "5"}, "/analytics/users/{user_id}/events",
                 200, "SELECT user_events"),
                ("/analytics/events/" + str(uuid.uuid4()), None, "/analytics/events/{event_id}",
                 404, "SELECT event"),
                ("/analytics/events/count", {"from_ts": "yesterday"}, "/analytics/events/count",
                 400, None),
            ]
            sent = []
            for path, params, route, status, stmt in calls:
                tid, sid = new_ids()
                st, _, body = get(svc, path, params, {"traceparent": traceparent(tid, sid)})
                expect(st == status, "%s %r: status %s, want %s: %r" % (path, params, st, status,
                                                                         body[:200]))
                sent.append((tid, sid, path, route, status, stmt))
            # No traceparent: a new trace, a root span.
            st, _, _ = get(svc, "/analytics/events/top", RANGE)
            expect(st == 200, "top without traceparent: %s" % st)
            # An invalid traceparent is ignored (new trace), never an error.
            st, _, _ = get(svc, "/analytics/events/top", RANGE, {"traceparent": "00-zz-bad-01"})
            expect(st == 200, "top with a bad traceparent: %s" % st)

            want = sum(2 if s[5] else 1 for s in sent) + 4
            spans = rx.wait_spans(lambda sp: len(sp) >= want)
            by_trace = {}
            for s in spans:
                by_trace.setdefault(s["trace_id"], []).append(s)
                expect(s["service"] == "epp-analytics", "service.name %r" % s["service"])
            for tid, sid, path, route, status, stmt in sent:
                trace = by_trace.get(tid, [])
                servers = [s for s in trace if s["kind"] == 2]
                clients = [s for s in trace if s["kind"] == 3]
                if not expect(len(servers) == 1, "%s: one SERVER span in the client's trace, got %r"
                              % (path, trace)):
                    continue
                srv = servers[0]
                a = srv["attrs"]
                expect(srv["parent"] == sid, "%s: SERVER parent %s, want %s" % (path, srv["parent"], sid))
                expect(srv["name"] == "GET " + route, "%s: span name %r" % (path, srv["name"]))
                expect(a.get("http.request.method") == "GET", "%s: method %r" % (path, a))
                expect(a.get("http.route") == route, "%s: http.route %r" % (path, a))
                expect(a.get("url.path") == path, "%s: url.path %r" % (path, a))
                expect(a.get("http.response.status_code") == status, "%s: status attr %r" % (path, a))
                expect(a.get("server.port") == svc.port, "%s: server.port %r" % (path, a))
                expect(srv["status"] == 0, "%s: status %s for a %d" % (path, srv["status"], status))
                if stmt is None:
                    expect(not clients, "%s: a refused request ran SQL: %r" % (path, clients))
                    continue
                # A user's listing looks back in widening windows (analytics_queries.c,
                # listing_windows_us): one statement per window tried, at most four; every other
                # route runs one statement.
                most = 4 if stmt == "SELECT user_events" else 1
                if not expect(1 <= len(clients) <= most, "%s: %s CLIENT span(s), got %r" % (
                        path, "one" if most == 1 else "1-4", clients)):
                    continue
                for q in clients:
                    qa = q["attrs"]
                    expect(q["parent"] == srv["span_id"],
                           "%s: CLIENT parent is not the SERVER span" % path)
                    expect(q["name"] == stmt, "%s: statement span %r, want %r" % (path, q["name"], stmt))
                    expect(qa.get("db.system") == "postgresql", "%s: db.system %r" % (path, qa))
                    expect(qa.get("db.namespace") == db_name, "%s: db.namespace %r" % (path, qa))
                    expect(qa.get("db.operation.name") == "SELECT", "%s: db.operation.name" % path)
                    text = qa.get("db.query.text") or ""
                    expect(text.startswith(("SELECT", "WITH")) and "$1" in text,
                           "%s: db.query.text is not the parameterised SQL: %r" % (path, text[:80]))
                    expect("2026-03" not in text and "u1" not in text.replace("$1", ""),
                           "%s: db.query.text carries parameter values" % path)
                    expect(srv["start_ns"] <= q["start_ns"] <= q["end_ns"] <= srv["end_ns"],
                           "%s: statement span outside the request span" % path)
            known = {s[0] for s in sent}
            roots = [s for s in spans if s["trace_id"] not in known and s["kind"] == 2]
            expect(len(roots) == 2 and all(s["parent"] is None for s in roots),
                   "requests without (valid) traceparent: want 2 root SERVER spans, got %r" % roots)
            time.sleep(1.2)  # the exporter's counter moves after the receiver's answer
            exported = metric(svc, "epp_otel_spans_exported_total")
            expect(exported >= want, "epp_otel_spans_exported_total %s < %d" % (exported, want))
            expect(metric(svc, "epp_otel_spans_dropped_total") == 0, "spans dropped with a healthy collector")
        finally:
            svc.stop()

        # The database down: 503, and the request's span has status ERROR.
        down = start(env, "postgresql://postgres@127.0.0.1:%d/none?connect_timeout=1" % t.free_port(),
                     {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}, "traces-dbdown")
        try:
            tid, sid = new_ids()
            st, _, _ = get(down, "/analytics/events/count", RANGE, {"traceparent": traceparent(tid, sid)})
            expect(st == 503, "database down: %s, want 503" % st)
            spans = rx.wait_spans(lambda sp: any(s["trace_id"] == tid for s in sp))
            srv = [s for s in spans if s["trace_id"] == tid]
            expect(len(srv) == 1 and srv[0]["status"] == 2
                   and srv[0]["attrs"].get("http.response.status_code") == 503,
                   "database down: want one ERROR span with status code 503, got %r" % srv)
        finally:
            down.stop()
        expect(not rx.errors, "invalid OTLP payloads: %r" % rx.errors[:5])


def check_sampler_zero(env, db_url):
    with OtlpReceiver() as rx:
        svc = start(env, db_url, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                                  "OTEL_TRACES_SAMPLER_ARG": "0",
                                  "OTEL_SERVICE_NAME": "analytics-eu1"}, "traces-ratio0")
        try:
            for _ in range(20):
                st, _, _ = get(svc, "/analytics/events/count", RANGE)
                expect(st == 200, "ratio 0: status %s" % st)
            tid, sid = new_ids()
            get(svc, "/analytics/events/count", RANGE, {"traceparent": traceparent(tid, sid, "00")})
            time.sleep(2.5)  # two export intervals
            expect(rx.snapshot() == [], "OTEL_TRACES_SAMPLER_ARG=0 exported %d spans" % len(rx.snapshot()))
            # Parent-based: the client sampled this trace, so the service records its part.
            tid, sid = new_ids()
            get(svc, "/analytics/events/count", RANGE, {"traceparent": traceparent(tid, sid, "01")})
            spans = rx.wait_spans(lambda sp: len([s for s in sp if s["trace_id"] == tid]) == 2)
            expect(all(s["service"] == "analytics-eu1" for s in spans),
                   "OTEL_SERVICE_NAME not used: %r" % {s["service"] for s in spans})
        finally:
            svc.stop()
        expect(not rx.errors, "invalid OTLP payloads: %r" % rx.errors[:5])


def latencies(svc, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, _ = get(svc, "/analytics/events/count", RANGE)
        out.append(time.perf_counter() - t0)
        expect(st == 200, "%s: status %s" % (svc.log_path, st))
    return out


def check_collector_down(env, db_url):
    silent = OtlpReceiver(mode="silent").start()
    healthy = OtlpReceiver().start()
    closed_port = t.free_port()
    svcs = {}
    try:
        svcs["off"] = start(env, db_url, {}, "traces-off")
        svcs["on"] = start(env, db_url, {"OTEL_EXPORTER_OTLP_ENDPOINT": healthy.endpoint},
                           "traces-on")
        svcs["closed"] = start(env, db_url, {"OTEL_EXPORTER_OTLP_ENDPOINT":
                                             "http://127.0.0.1:%d" % closed_port}, "traces-closed")
        svcs["silent"] = start(env, db_url, {"OTEL_EXPORTER_OTLP_ENDPOINT": silent.endpoint},
                               "traces-silent")
        for svc in svcs.values():
            latencies(svc, 20)  # warm the pool and prepared statements
        lat = {k: [] for k in svcs}
        deadline = time.monotonic() + 5.0  # spans time out against the silent collector meanwhile
        while time.monotonic() < deadline or len(lat["off"]) < 300:
            for k, svc in svcs.items():  # interleaved blocks: drift hits every variant alike
                lat[k] += latencies(svc, 25)
        med = {k: statistics.median(v) * 1000 for k, v in lat.items()}
        print("median latency ms: %s, slowest ms: %s (requests per variant: %d)"
              % ({k: round(v, 3) for k, v in med.items()},
                 {k: round(max(v) * 1000, 1) for k, v in lat.items()}, len(lat["off"])))
        for k in ("on", "closed", "silent"):
            # Generous: the bound is about a stuck request path, not about noise.
            expect(med[k] <= med["off"] * 2 + 2.0,
                   "collector %s: median %.3f ms vs %.3f ms with tracing off" % (k, med[k], med["off"]))
            # An export on the request path would stall a request for the POST timeout (2 s)
            # once per batch: the median would not show it, the slowest request would.
            expect(max(lat[k]) < 1.5, "collector %s: a request took %.3f s" % (k, max(lat[k])))
        for k in ("closed", "silent"):
            dropped = t.wait_for(lambda: metric(svcs[k], "epp_otel_spans_dropped_total",
                                                {"reason": "export_failed"}),
                                 timeout=15, msg="dropped spans with the collector %s" % k)
            print("collector %s: epp_otel_spans_dropped_total{reason=\"export_failed\"} = %d"
                  % (k, dropped))
            expect(metric(svcs[k], "epp_otel_spans_exported_total") == 0,
                   "collector %s: spans counted as exported" % k)
        expect(silent.connections > 0, "the exporter never connected to the silent collector")
        # Shutdown is bounded even with a collector that never answers.
        t0 = time.monotonic()
        svcs.pop("silent").stop()
        expect(time.monotonic() - t0 < 10, "shutdown with a hung collector took %.1fs"
               % (time.monotonic() - t0))
    finally:
        for svc in svcs.values():
            svc.stop()
        silent.stop()
        healthy.stop()
    expect(not healthy.errors, "invalid OTLP payloads: %r" % healthy.errors[:5])


def main():
    env = t.load_env(sys.argv[1] if len(sys.argv) > 1 else None)
    name = t.unique_name("obs_traces")
    db_url = t.create_database(env, name)
    try:
        t.apply_migrations(db_url)
        check_spans(env, db_url, name)
        check_sampler_zero(env, db_url)
        check_collector_down(env, db_url)
    finally:
        t.drop_database(env, db_url)
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
