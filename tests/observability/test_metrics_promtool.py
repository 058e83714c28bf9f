"""Every service's /metrics after traffic passes `promtool check metrics`, carries the process
metrics and epp_build_info, and the alert and recording rules (docker/prometheus/alerts.yml,
recording.yml) pass `promtool check rules` and only use metrics some service exports (or a
recording rule records).

The stack (tests/lib/epp_stack.py: the services of build/bin on a fresh database and topic)
gets: single events and a batch, a bad event (400), an undecodable Kafka message (dead-lettered
by the consumer), analytics queries and a bad analytics query (400), 404s.

Usage: test_metrics_promtool.py BUILD_DIR (needs the pg and broker fixtures). The scraped
texts are kept in BUILD/test-logs/metrics-<service>.txt (docs/operations.md lists them)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import epp_testlib as t  # noqa: E402
from epp_stack import Stack  # noqa: E402
from otlp_receiver import OtlpReceiver  # noqa: E402

PROCESS_METRICS = ["process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "process_start_time_seconds", "epp_build_info"]
RULE_FILES = [os.path.join(REPO, "docker", "prometheus", n) for n in ("alerts.yml", "recording.yml")]
# Series Prometheus makes itself (not exported by any service).
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "predict_linear", "histogram_quantile", "abs", "absent", "absent_over_time",
    "ceil", "floor", "round", "clamp_min", "clamp_max", "time", "vector", "scalar", "sort",
    "sort_desc", "label_replace", "label_join", "changes", "resets", "avg_over_time",
    "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "timestamp", "le", "inf", "nan",
}

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def promtool():
    p = os.environ.get("EPP_PROMTOOL") or shutil.which("promtool")
    t.check(p and os.access(p, os.X_OK), "promtool not found (Debian package prometheus)")
    return p


def families(text):
    """Metric family names of an exposition text: from # TYPE lines and sample names."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def alert_metric_names(expr):
    """The metric names an alert expression selects (identifiers outside label matchers,
    grouping clauses and range brackets that are not PromQL functions or keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        if word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def exported(name, fams):
    if name in fams:
        return True
    # A histogram's series: name_bucket / _sum / _count belong to the family name.
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in fams:
            return True
    return False


def send_traffic(env, stack):
    ingest = stack.ingest_url if "ingest" in stack.procs else None
    analytics = stack.analytics_url if "analytics" in stack.procs else None
    stored = 0
    if ingest:
        for i in range(5):
            st, _, body = t.http_json("POST", ingest + "/events",
                                      {"user_id": "u%d" % i, "event_name": "page_view",
                                       "metadata": {"i": i}}, timeout=30)
            expect(st == 202, "POST /events: %s %r" % (st, body))
        st, _, body = t.http_json("POST", ingest + "/events/batch",
                                  [{"user_id": "b", "event_name": "click"},
                                   {"user_id": "", "event_name": "click"}], timeout=30)
        expect(st in (200, 207, 202), "POST /events/batch: %s %r" % (st, body))
        st, _, _ = t.http_json("POST", ingest + "/events", {"user_id": "u", "evnt": "typo"})
        expect(st == 400, "bad event: %s" % st)
        st, _, _ = t.http_request("GET", ingest + "/nothing")
        expect(st == 404, "ingest 404: %s" % st)
        stored = 6
    if "consumer" in stack.procs:
        # One message the consumer can never store: it is dead-lettered (and counted).
        t.produce(env, stack.topic, [b"this is not json"], key=b"x")
        if stored:
            stack.wait_rows(stored, timeout=30)
    if analytics:
        rng = {"from_ts": "2020-01-01T00:00:00Z", "to_ts": "2030-01-01T00:00:00Z"}
        for path, params in (("/analytics/events/count", rng),
                             ("/analytics/events/timeseries", dict(rng, interval="day",
                                                                   from_ts="2026-01-01T00:00:00Z")),
                             ("/analytics/events/top", rng), ("/analytics/users/active", rng),
                             ("/analytics/users/u1/events", {}),
                             ("/analytics/events/" + str(uuid.uuid4()), {})):
            st, _, body = t.http_request("GET", analytics + path + "?" + urllib.parse.urlencode(params),
                                         timeout=30)
            expect(st in (200, 404), "%s: %s %r" % (path, st, body[:200]))
        st, _, _ = t.http_request("GET", analytics + "/analytics/events/count?from_ts=yesterday")
        expect(st == 400, "bad analytics query: %s" % st)
        st, _, _ = t.http_request("GET", analytics + "/dashboard")
        expect(st == 200, "dashboard: %s" % st)


def check_dead_letters_at_zero(url):
    """Before any dead letter, epp-consumer exports epp_consumer_dead_lettered_total at 0 for
    every reason: a series first seen at 1 looks like no increase to Prometheus, and the
    EppConsumerDeadLetters alert (increase over 15m) would miss the first dead letter."""
    samples = t.metric_samples(t.metrics_text(url), "epp_consumer_dead_lettered_total")
    zero = {lab.split('"')[1] for lab, v in samples if v == 0 and lab.startswith('{reason="')}
    want = {"invalid_json", "invalid_field", "missing_field", "unknown_field",
            "payload_too_large", "db_rejected"}
    expect(want <= zero,
           "epp-consumer exports the dead-letter reasons at 0 from start-up: missing %s"
           % sorted(want - zero))


def check_scrape(name, url, tool, logs):
    st, hdrs, body = t.http_request("GET", url + "/metrics")
    expect(st == 200, "%s /metrics: %s" % (name, st))
    ctype = hdrs.get("content-type", "")
    expect(ctype.startswith("text/plain") and "version=0.0.4" in ctype,
           "%s /metrics Content-Type %r" % (name, ctype))
    text = body.decode()
    with open(os.path.join(logs, "metrics-%s.txt" % name), "w") as f:
        f.write(text)
    p = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode().strip()
    expect(p.returncode == 0 and not out, "%s: promtool check metrics: rc %d: %s"
           % (name, p.returncode, out))
    fams = families(text)
    for m in PROCESS_METRICS:
        expect(m in fams, "%s: %s missing" % (name, m))
    build = [line for line in text.splitlines() if line.startswith("epp_build_info{")]
    expect(build and 'version="' in build[0] and build[0].endswith(" 1"),
           "%s: epp_build_info should be one series {version=...} 1: %r" % (name, build))
    print("%s: %d metric families, promtool clean" % (name, len(fams)))
    return fams


def check_rules(tool, all_fams):
    p = subprocess.run([tool, "check", "rules"] + RULE_FILES, capture_output=True, timeout=60)
    expect(p.returncode == 0, "promtool check rules %s: %s" % (RULE_FILES, (p.stdout + p.stderr).decode()))
    import yaml  # noqa: E402 - only here, the rest of the test needs no yaml
    rules = []
    for path in RULE_FILES:
        with open(path) as f:
            rules += [r for g in yaml.safe_load(f).get("groups", []) for r in g.get("rules", [])]
    recorded = {r["record"] for r in rules if "record" in r}
    missing = {}
    for rule in rules:
        for name in alert_metric_names(str(rule.get("expr", ""))):
            if name in PROMETHEUS_OWN or name in recorded or exported(name, all_fams):
                continue
            missing.setdefault(name, []).append(rule.get("alert") or rule.get("record"))
    for name, users in sorted(missing.items()):
        print("rules use %s (%s), which no service exports" % (name, ", ".join(users)),
              file=sys.stderr)
    expect(not missing, "rules use metrics no service exports: %s" % sorted(missing))


def main():
    env = t.load_env(sys.argv[1] if len(sys.argv) > 1 else None)
    tool = promtool()
    services = tuple(s for s in ("consumer", "ingest", "analytics")
                     if os.access(t.bin_path(env, "epp-" + s), os.X_OK))
    t.check(services, "no service built in %s/bin" % env["EPP_BUILD_DIR"])
    logs = os.path.join(env["EPP_BUILD_DIR"], "test-logs")
    os.makedirs(logs, exist_ok=True)
    all_fams = set()
    # Tracing on (to a test collector), so that the exporter's metrics are checked too.
    with OtlpReceiver() as rx, Stack(env, name="obs_metrics", services=services,
                                     extra_env={"HTTP_BIND_ADDRESS": "127.0.0.1",
                                                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}) as stack:
        if "consumer" in stack.procs:
            check_dead_letters_at_zero(stack.consumer_url)
        send_traffic(env, stack)
        time.sleep(1.5)  # gauges sampled on a timer (lag, pool) catch up; spans are exported
        for svc in services:
            fams = check_scrape("epp-" + svc, stack.url(svc), tool, logs)
            all_fams |= fams
            if svc == "analytics":
                expect({"epp_otel_spans_exported_total", "epp_otel_spans_dropped_total"} <= fams,
                       "epp-analytics with tracing on: epp_otel_spans_* missing")
        expect(not rx.errors, "invalid OTLP payloads: %r" % rx.errors[:5])
    check_rules(tool, all_fams)
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
