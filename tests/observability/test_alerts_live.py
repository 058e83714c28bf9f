#!/usr/bin/env python3
"""The alerts of docker/prometheus/alerts.yml proven on a live stack: a real Prometheus
(scripts/prometheus.sh, Debian's server) scrapes epp-consumer, epp-ingest and epp-analytics
(tests/lib/epp_stack.Stack on a PRIVATE Postgres cluster -- scripts/pg.sh -- and a PRIVATE
Apache Kafka node -- scripts/kafka.sh, t.KafkaCluster), and each
condition is caused for real; /api/v1/alerts is read until the expected alert fires, the
condition is restored, and the alert must resolve:

    healthy      epp-load for a minute (plus analytics queries): no alert fires
    consumer     epp-consumer stopped while events arrive: EppServiceDown{job=epp-consumer} and
                 EppEventsNotStored; back: both resolve
    lag          the backlog (> 100k) left by the stop, read by an under-provisioned consumer
                 (one row per transaction) while events keep arriving: EppConsumerLagGrowing;
                 a normal consumer again: it drains and the alert resolves
    broker       the private Kafka node killed: ingestion answers 503,
                 EppIngestKafkaUnavailable; started again: resolves
    postgres     the private Postgres stopped: EppConsumerRetrying, EppAnalyticsDatabaseErrors;
                 started again: both resolve
    poison       an undecodable message in the topic: EppConsumerDeadLetters (at once), which
                 resolves when the window has passed

Durations scaled, rules unchanged: a live test cannot wait 10 minutes per alert, so Prometheus
loads a copy of alerts.yml in which every duration -- each `for:`, each range `[5m]` and
subquery `[10m:1m]` -- is divided by SCALE (30: 1m -> 2s, 5m -> 10s, 15m -> 30s), and scrapes
and evaluates every second. Expressions, thresholds, labels and annotations are the shipped
ones: the copy is checked to differ from alerts.yml in exactly those durations. The timing of
the shipped durations is what tests/observability/rules_test.yml checks with promtool. The
recording rules are loaded unscaled, and a screenshot of Prometheus' graph page with them is
saved to BUILD/test-artifacts/prometheus-graph.png (docs/operations.md shows it).

    test_alerts_live.py BUILD_DIR [--only healthy,consumer,...]

It takes about five minutes: label chaos-full (`make chaos`); docs/operations.md has its
result. Timings per alert are printed as a table at the end and kept in
BUILD/test-logs/alerts-live.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
sys.path.insert(0, os.path.join(REPO, "tests", "chaos"))
import epp_testlib as t  # noqa: E402
from epp_stack import Stack  # noqa: E402
import harness as H  # noqa: E402  (PgCluster: a private Postgres cluster)

SCALE = 30
RULES = os.path.join(REPO, "docker", "prometheus")
PHASES = ["healthy", "consumer", "lag", "broker", "postgres", "poison"]
# The graph page's panels (docs/operations.md, "Recording rules").
GRAPHS = ["epp:ingest_events_accepted:rate1m", "epp:ingest_events_rejected:rate1m",
          "epp:consumer_lag:sum", "epp:consumer_rows_inserted:rate1m",
          "epp:analytics_request_duration_seconds:p99_1m",
          "epp:analytics_db_query_duration_seconds:p99_1m"]


def log(msg):
    print("alerts: " + msg, flush=True)


# ---------------------------------------------------------------------------------------------
# The scaled copy of the rules
# ---------------------------------------------------------------------------------------------

UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000,
            "y": 31536000000}
DURATION = r"(?:\d+(?:ms|[smhdwy]))+"
# A duration in the rules: the value of `for:`, or inside range / subquery brackets.
DURATION_IN_RULES = re.compile(r"(?<=for: )%s$|(?<=\[)%s(?=[:\]])|(?<=:)%s(?=\])" %
                               (DURATION, DURATION, DURATION), re.M)


def duration_ms(text):
    return sum(int(n) * UNITS_MS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", text))


def format_ms(ms):
    for unit in ("h", "m", "s"):
        if ms % UNITS_MS[unit] == 0:
            return "%d%s" % (ms // UNITS_MS[unit], unit)
    return "%dms" % ms


def scale_rules(text, k):
    """The rule file with every duration divided by k (each must divide evenly in ms)."""
    def one(m):
        ms = duration_ms(m.group(0))
        t.check(ms % k == 0, "duration %s does not divide by %d" % (m.group(0), k))
        return format_ms(ms // k)
    return DURATION_IN_RULES.sub(one, text)


def check_scaled(orig, scaled, k):
    """scaled is orig with only its durations divided by k: the same text once durations are
    blanked, and each duration pair in the ratio k."""
    a, b = DURATION_IN_RULES.findall(orig), DURATION_IN_RULES.findall(scaled)
    t.check(DURATION_IN_RULES.sub("D", orig) == DURATION_IN_RULES.sub("D", scaled),
            "the scaled rules differ from the shipped ones in more than durations")
    t.check(len(a) == len(b) and all(duration_ms(x) == k * duration_ms(y) for x, y in zip(a, b)),
            "durations not scaled by %d: %r -> %r" % (k, a, b))
    t.check(yaml.safe_load(orig) is not None and len(a) >= 8, "found %d durations" % len(a))
    return list(zip(a, b))


def scaled_rules_dir(workdir):
    """workdir/rules: alerts.yml scaled, recording.yml as shipped."""
    d = os.path.join(workdir, "rules")
    os.makedirs(d)
    with open(os.path.join(RULES, "alerts.yml")) as f:
        orig = f.read()
    scaled = scale_rules(orig, SCALE)
    pairs = check_scaled(orig, scaled, SCALE)
    with open(os.path.join(d, "alerts.yml"), "w") as f:
        f.write(scaled)
    shutil.copy(os.path.join(RULES, "recording.yml"), d)
    log("alerts.yml with durations / %d: %s" % (SCALE, ", ".join(
        "%s->%s" % p for p in sorted(set(pairs), key=lambda p: duration_ms(p[0])))))
    return d


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------

class Prometheus:
    def __init__(self, workdir, stack, rules_dir):
        self.dir = os.path.join(workdir, "prometheus")
        self.sh = os.path.join(REPO, "scripts", "prometheus.sh")
        targets = ["epp-%s=127.0.0.1:%d" % (svc, stack.procs[svc].port)
                   for svc in ("ingest", "consumer", "analytics")]
        r = subprocess.run(["bash", self.sh, "start", self.dir, str(t.free_port()), "--interval",
                            "1s", "--rules", rules_dir] + targets,
                           capture_output=True, text=True, timeout=60)
        t.check(r.returncode == 0, "prometheus.sh start: %s%s" % (r.stdout, r.stderr))
        log(r.stdout.strip())
        with open(os.path.join(self.dir, "prometheus.url")) as f:
            self.url = f.read().strip()
        self.started = time.monotonic()

    def api(self, path, **params):
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        st, _, body = t.http_json("GET", self.url + "/api/v1/" + path + q, timeout=10)
        t.check(st == 200 and body.get("status") == "success", "%s: %s %r" % (path, st, body))
        return body["data"]

    def alerts(self):
        return self.api("alerts")["alerts"]

    def value(self, expr):
        res = self.api("query", query=expr)["result"]
        return float(res[0]["value"][1]) if res else None

    def stop(self):
        subprocess.run(["bash", self.sh, "stop", self.dir], capture_output=True, timeout=60)
        logs = os.path.join(os.environ.get("EPP_BUILD_DIR", ""), "test-logs")
        if os.path.isdir(logs) and os.path.exists(os.path.join(self.dir, "prometheus.log")):
            shutil.copy(os.path.join(self.dir, "prometheus.log"),
                        os.path.join(logs, "alerts-live-prometheus.log"))


def matching(alerts, name, labels=None, state="firing"):
    return [a for a in alerts if a["labels"].get("alertname") == name and a["state"] == state and
            all(a["labels"].get(k) == v for k, v in (labels or {}).items())]


class Timeline:
    """When each condition was caused, its alert fired, the condition was restored, and the
    alert resolved."""

    def __init__(self, prom):
        self.prom = prom
        self.rows = []

    def cause(self, *names):
        """The time a condition is caused, after checking that none of the alerts it should
        fire is active yet (so that a firing alert is this condition's doing)."""
        active = [a["labels"]["alertname"] for a in self.prom.alerts()
                  if a["labels"].get("alertname") in names]
        t.check(not active, "already active before the cause: %s" % active)
        return time.monotonic()

    def wait_firing(self, phase, name, since, labels=None, timeout=120):
        found = t.wait_for(lambda: matching(self.prom.alerts(), name, labels), timeout=timeout,
                           interval=0.5, msg="%s firing (%s)" % (name, phase))
        took = time.monotonic() - since
        a = found[0]
        log("%s firing %.1f s after the cause: labels %s, summary %r" %
            (name, took, json.dumps(a["labels"], sort_keys=True), a["annotations"].get("summary")))
        self.rows.append({"phase": phase, "alert": name, "labels": labels or {}, "fired": took,
                          "resolved": None, "annotations": a["annotations"]})
        return a

    def wait_resolved(self, name, since, labels=None, timeout=120):
        def gone():
            live = [a for a in self.prom.alerts() if a["labels"].get("alertname") == name and
                    all(a["labels"].get(k) == v for k, v in (labels or {}).items())]
            return not live
        t.wait_for(gone, timeout=timeout, interval=0.5, msg="%s resolved" % name)
        took = time.monotonic() - since
        log("%s resolved %.1f s after the restore" % (name, took))
        for r in self.rows:
            if r["alert"] == name and r["labels"] == (labels or {}) and r["resolved"] is None:
                r["resolved"] = took

    def markdown(self):
        out = ["| condition | alert | fired after (s) | resolved after restore (s) |",
               "|---|---|---|---|"]
        for r in self.rows:
            name = r["alert"] + ("{%s}" % ",".join("%s=%s" % kv for kv in r["labels"].items())
                                 if r["labels"] else "")
            out.append("| %s | `%s` | %.1f | %s |" % (r["phase"], name, r["fired"],
                                                     "%.1f" % r["resolved"] if r["resolved"]
                                                     is not None else "-"))
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------------------------

class Load:
    """epp-load against ingestion in the background, until stop()."""

    def __init__(self, env, stack, rps, batch=0, connections=16, name="load"):
        log_path = os.path.join(env["EPP_BUILD_DIR"], "test-logs", "alerts-live-%s.log" % name)
        self.out = open(log_path, "w")
        self.proc = subprocess.Popen(
            [t.bin_path(env, "epp-load"), "--url", stack.ingest_url + "/events", "--rps",
             str(rps), "--batch", str(batch), "--duration", "1h", "--connections",
             str(connections), "--timeout", "10", "--json"],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


class AnalyticsPoller(threading.Thread):
    """GET /analytics/events/count every 0.2 s; counts the statuses."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.url = stack.analytics_url + "/analytics/events/count?" + urllib.parse.urlencode(
            {"from_ts": "2020-01-01T00:00:00Z", "to_ts": "2040-01-01T00:00:00Z"})
        self.statuses = {}
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                st, _, _ = t.http_request("GET", self.url, timeout=5)
            except OSError:
                st = "conn"
            self.statuses[st] = self.statuses.get(st, 0) + 1
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join(10)


def stored_rows(stack):
    try:
        return stack.count_rows()
    except Exception:  # noqa: BLE001 - Postgres may be down in that phase
        return None


def backlog(env, stack):
    """Messages in the topic not yet stored (high watermarks minus rows; no duplicates here)."""
    high = sum(hi for _, hi in t.topic_offsets(env, stack.topic).values())
    return high - (stored_rows(stack) or 0)


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------

def phase_healthy(ctx):
    """A minute of epp-load and analytics queries: no alert may fire (pending ones are
    reported; the scaled rules are more sensitive than the shipped ones, not less)."""
    prom = ctx["prom"]
    rows0 = stored_rows(ctx["stack"])
    load = Load(ctx["env"], ctx["stack"], rps=300, name="healthy")
    fired, pending = {}, {}
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            for a in prom.alerts():
                key = json.dumps(a["labels"], sort_keys=True)
                (fired if a["state"] == "firing" else pending)[key] = a["state"]
            time.sleep(1)
    finally:
        load.stop()
    rows = stored_rows(ctx["stack"]) - rows0
    log("healthy: %d events stored in the minute; pending at some point: %s" %
        (rows, sorted(pending) or "none"))
    t.check(rows > 10000, "the load reached Postgres (%d rows)" % rows)
    t.check(not fired, "alerts fired on a healthy stack: %s" % sorted(fired))
    ctx["healthy"] = {"rows": rows, "pending": sorted(pending)}


# An under-provisioned consumer: one row per transaction, one writer, no pipeline.
SLOW_CONSUMER = {"CONSUMER_BATCH_SIZE": "1", "CONSUMER_WRITERS": "1", "CONSUMER_PIPELINE": "false"}


def phase_consumer(ctx):
    """epp-consumer stopped while events arrive: it is down, and events are not stored. With
    the lag phase, a burst of batches meanwhile leaves more than 105k messages waiting, and
    the consumer comes back under-provisioned (see phase_lag)."""
    env, tl, stack = ctx["kenv"], ctx["tl"], ctx["stack"]
    load = Load(ctx["env"], stack, rps=300, name="consumer")
    try:
        cause = tl.cause("EppServiceDown", "EppEventsNotStored")
        stack.procs["consumer"].stop()
        tl.wait_firing("consumer stopped", "EppServiceDown", cause, {"job": "epp-consumer"})
        tl.wait_firing("consumer stopped", "EppEventsNotStored", cause)
        extra = None
        if "lag" in ctx["phases"]:
            burst = Load(ctx["env"], stack, rps=200, batch=100, connections=32, name="burst")
            try:
                t.wait_for(lambda: backlog(env, stack) > 105000, timeout=120, interval=0.5,
                           msg="a backlog of 105k messages")
            finally:
                burst.stop()
            log("consumer: backlog %d messages" % backlog(env, stack))
            extra = SLOW_CONSUMER
        restore = tl.cause("EppConsumerLagGrowing")  # the lag phase's cause
        stack.restart_service("consumer", extra_env=extra)
        tl.wait_resolved("EppServiceDown", restore, {"job": "epp-consumer"})
        tl.wait_resolved("EppEventsNotStored", restore)
    finally:
        load.stop()
    if extra:
        phase_lag(ctx, restore)


def phase_lag(ctx, since):
    """The under-provisioned consumer reads the backlog slower than events keep arriving:
    more than 100k messages wait and the number grows, EppConsumerLagGrowing fires. A normal
    consumer again drains it, and the alert resolves -- checked once the backlog is gone:
    a consumer that has not been assigned its partitions yet reports no lag at all, which also
    ends the alert (docs/operations.md)."""
    env, tl, stack, prom = ctx["kenv"], ctx["tl"], ctx["stack"], ctx["prom"]
    # 1,500 events a second: more than the slow consumer stores (about 700 here).
    more = Load(ctx["env"], stack, rps=150, batch=10, name="lag")
    halt = threading.Event()

    def report():  # what the consumer reports next to the real backlog, every 5 s
        while not halt.wait(5):
            try:
                log("lag: epp:consumer_lag:sum %s, deriv %s, backlog %d, rows/s %s" % (
                    prom.value("epp:consumer_lag:sum"),
                    prom.value("deriv(sum(epp_consumer_lag)[20s:2s])"), backlog(env, stack),
                    prom.value("sum(rate(epp_consumer_rows_inserted_total[10s]))")))
            except Exception as e:  # noqa: BLE001 - a report only
                log("lag: report failed: %r" % e)
    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        tl.wait_firing("slow consumer, backlog > 100k", "EppConsumerLagGrowing", since,
                       timeout=180)
        lag = prom.value("epp:consumer_lag:sum")
        log("lag: epp:consumer_lag:sum = %s" % lag)
        t.check(lag is not None and lag > 100000, "the recorded lag is over 100k: %s" % lag)
    finally:
        halt.set()
        more.stop()
    restore = time.monotonic()
    stack.restart_service("consumer")
    left = t.wait_for(lambda: (lambda v: v is not None and v < 1000 and [v])(
        prom.value("epp:consumer_lag:sum")), timeout=300, interval=0.5,
        msg="the backlog drained (epp:consumer_lag:sum < 1000)")
    log("lag: drained in %.1f s (epp:consumer_lag:sum %s, topic minus rows %d)" %
        (time.monotonic() - restore, left[0], backlog(env, stack)))
    tl.wait_resolved("EppConsumerLagGrowing", restore)


def phase_broker(ctx):
    """The private Kafka node killed (a crash): ingestion answers 503 (after
    KAFKA_DELIVERY_TIMEOUT_MS). Started again, it answers 202 again."""
    tl, stack, kafka = ctx["tl"], ctx["stack"], ctx["kafka"]
    load = Load(ctx["env"], stack, rps=100, name="broker")
    try:
        cause = tl.cause("EppIngestKafkaUnavailable")
        kafka.kill(1)
        tl.wait_firing("Kafka node killed", "EppIngestKafkaUnavailable", cause)
        restore = time.monotonic()
        kafka.start_node(1)
        log("broker: the Kafka node answers metadata again %.1f s after its start" %
            (time.monotonic() - restore))
        tl.wait_resolved("EppIngestKafkaUnavailable", restore)
    finally:
        load.stop()


def phase_postgres(ctx):
    """The private Postgres stopped: the consumer retries its batch, analytics queries fail."""
    tl, stack, pg = ctx["tl"], ctx["stack"], ctx["pg"]
    load = Load(ctx["env"], stack, rps=100, name="postgres")
    try:
        cause = tl.cause("EppConsumerRetrying", "EppAnalyticsDatabaseErrors")
        t.check(pg.stop() == 0, "pg_ctl stop")
        tl.wait_firing("Postgres stopped", "EppConsumerRetrying", cause)
        tl.wait_firing("Postgres stopped", "EppAnalyticsDatabaseErrors", cause)
        restore = time.monotonic()
        pg.start()
        tl.wait_resolved("EppConsumerRetrying", restore)
        tl.wait_resolved("EppAnalyticsDatabaseErrors", restore)
    finally:
        load.stop()


def phase_poison(ctx):
    """One message no consumer can decode: dead-lettered, and the alert fires at once (no
    `for:`); it resolves once the (scaled) 15-minute window no longer holds it."""
    tl, stack = ctx["tl"], ctx["stack"]
    cause = tl.cause("EppConsumerDeadLetters")
    t.produce(ctx["kenv"], stack.topic, [b"this is not an event"], key=b"poison")
    tl.wait_firing("poison message", "EppConsumerDeadLetters", cause)
    tl.wait_resolved("EppConsumerDeadLetters", cause)


# ---------------------------------------------------------------------------------------------
# The graph page
# ---------------------------------------------------------------------------------------------

def graph_screenshot(ctx, range_input):
    """Prometheus' graph page with one panel per recording rule over the whole test, in
    headless Chromium; every panel must show data."""
    env, prom = ctx["env"], ctx["prom"]
    npm = os.path.abspath(os.environ.get("EPP_ANALYTICS_NPM") or
                          os.path.join(env["EPP_BUILD_DIR"], "tests", "analytics", "npm"))
    t.check(os.path.isdir(os.path.join(npm, "node_modules", "playwright-core")),
            "playwright-core not installed in %s (analytics.npm_setup)" % npm)
    params = {}
    for i, expr in enumerate(GRAPHS):
        params.update({"g%d.expr" % i: expr, "g%d.tab" % i: "0", "g%d.range_input" % i: range_input})
    url = prom.url + "/graph?" + urllib.parse.urlencode(params)
    art = os.path.join(env["EPP_BUILD_DIR"], "test-artifacts")
    os.makedirs(art, exist_ok=True)
    shot = os.path.join(art, "prometheus-graph.png")
    profile = tempfile.mkdtemp(prefix="epp-chromium-", dir=env["EPP_BUILD_DIR"])
    try:
        p = subprocess.run(["node", os.path.join(HERE, "prometheus_graph.js"), url, shot,
                            str(len(GRAPHS)), profile], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ,
                                                 NODE_PATH=os.path.join(npm, "node_modules")))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    t.check(p.returncode == 0 and lines, "prometheus_graph.js: rc %s\n%s\n%s" %
            (p.returncode, p.stdout, p.stderr))
    res = json.loads(lines[-1])
    log("graph page: %s" % json.dumps(res))
    t.check(res["charts"] == len(GRAPHS), "a chart per recording rule: %r" % res)
    t.check(all(n > 0 for n in res["legend"]), "every chart has a series: %r" % res)
    t.check(not res["errors"], "errors on the graph page: %r" % res["errors"])
    log("screenshot: %s" % shot)


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--only", default=",".join(PHASES))
    args = ap.parse_args()
    if not H.full_requested():
        print("skipped: chaos-full runs under `make chaos` (or EPP_TEST_FULL=1)")
        return 77
    phases = args.only.split(",")
    t.check(set(phases) <= set(PHASES), "phases: %s" % PHASES)
    base = t.load_env(args.build)
    os.environ["EPP_BUILD_DIR"] = base["EPP_BUILD_DIR"]
    workdir = tempfile.mkdtemp(prefix="alerts-live-", dir=base["EPP_BUILD_DIR"])
    rules_dir = scaled_rules_dir(workdir)
    started = time.monotonic()
    pg = H.PgCluster(base["EPP_BUILD_DIR"]).start()
    kafka = t.KafkaCluster(base, nodes=1)
    prom = stack = poller = None
    ctx = {"phases": phases, "pg": pg}
    try:
        kenv = kafka.start().env
        env = pg.env(kenv)
        ctx.update(env=env, kenv=kenv, kafka=kafka)
        stack = Stack(env, name="alerts_live", service_env={
            "ingest": {"KAFKA_DELIVERY_TIMEOUT_MS": "2000"},
            "consumer": {"RETRY_MAX_BACKOFF_MS": "1000",
                         "PG_CONNECT_TIMEOUT_S": "2"}}).start()
        ctx["stack"] = stack
        prom = Prometheus(workdir, stack, rules_dir)
        ctx["prom"] = prom
        ctx["tl"] = Timeline(prom)
        t.wait_for(lambda: all(a["health"] == "up" for a in prom.api("targets")["activeTargets"]),
                   timeout=30, interval=0.5, msg="every target up")
        poller = AnalyticsPoller(stack)
        poller.start()
        for ph in phases:
            if ph == "lag":
                continue  # runs inside the consumer phase (it needs the stopped consumer)
            log("--- %s" % ph)
            globals()["phase_" + ph](ctx)
        t.check(not [a for a in prom.alerts() if a["state"] == "firing"],
                "alerts still firing at the end: %r" % prom.alerts())
        graph_screenshot(ctx, "%dm" % (2 + (time.monotonic() - prom.started) // 60))
    finally:
        if poller:
            poller.stop()
            log("analytics statuses: %r" % poller.statuses)
        if prom:
            prom.stop()
        if stack:
            stack.stop()
        kafka.stop()
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    took = time.monotonic() - started
    table = ctx["tl"].markdown()
    print(table)
    with open(os.path.join(base["EPP_BUILD_DIR"], "test-logs", "alerts-live.md"), "w") as f:
        f.write(table + "\n\nhealthy: %r\ntotal: %.0f s\n" % (ctx.get("healthy"), took))
    log("passed in %.0f s" % took)
    return 0


if __name__ == "__main__":
    sys.exit(main())
