#!/usr/bin/env python3
"""epp's fault-injection harness: the whole local stack under load, one fault per scenario, and a
loss / phantom / duplicate check against Postgres afterwards.

    harness.py BUILD_DIR [--full] [--group G | --scenarios a,b,...] [--results FILE] [--list]

Every scenario runs on its OWN stack: a private Postgres cluster (one per harness process, created
with scripts/pg.sh under BUILD_DIR/chaos/, so restarting it never disturbs other tests), a private
epp-devbroker (faults are never injected into the shared fixture broker), a fresh database, and
epp-consumer, epp-ingest and epp-analytics on free ports.

Traffic: Python threads with keep-alive http.client connections POST single events and batches;
every event carries a client-chosen event_id, and a few percent are invalid on purpose (they must
be refused and must never be stored). Each event's outcome is recorded:
    ok       202 (a single event) or a per-index result with an event_id and no error
    failed   a definite refusal: a 4xx, or a per-index validation error
    unknown  a timeout, a 5xx (503 kafka_unavailable / queue_full), a connection refused or reset
Once the fault is over, every unknown event is resent ONCE with the same event_id, as a client
would (idempotent retry); a 202 then makes it ok (a promise like any other).

After the consumer has drained (every distinct event_id in the topic is a row, or the row count
stopped moving), the check:
    lost        ok event_ids missing from public.events
    expired     (only where the scenario expects a retention gap) the missing ok events that the
                broker's retention deleted before they were read, or that wait behind that gap in
                the stalled partition -- reported loudly by the consumer, not lost by epp
    phantom     failed event_ids present, plus rows whose event_id was never sent
    duplicated  event_ids stored more than once (the PK makes it impossible; checked anyway)
    rollups     epp_rollup_minute/hour/day and epp_user_day equal GROUP BY over public.events
    corrupted   ok rows whose user_id / event_name differ from what was sent
    crashes     a service that died without being killed by the scenario
Duplicates in the TOPIC are expected where a produce ack was lost and the producer resent (the
mock broker stores a resend twice): they are counted (topic_dups) and are no failure.

Output: one line per scenario
    scenario requests ok failed unknown lost phantom duplicated passed|failed
followed by a '#' line with the details. Exit status 1 when any scenario failed.
"""

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import epp_testlib as t  # noqa: E402
import epp_rollups  # noqa: E402

PG_BINDIR = os.environ.get("EPP_PG_BINDIR", "/usr/lib/postgresql/15/bin")
FULL = os.environ.get("EPP_TEST_FULL") == "1"


def log(msg):
    print("chaos: " + msg, flush=True)


# ---------------------------------------------------------------------------------------------
# A private Postgres cluster (restartable without touching anybody else's tests)
# ---------------------------------------------------------------------------------------------

class PgCluster:
    def __init__(self, build_dir, name=None):
        self.dir = os.path.join(build_dir, "chaos", name or "pg-%d" % os.getpid())
        self.port = None

    def _sh(self, *args, check=True):
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh")] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise t.TestFailure("pg.sh %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def _ctl(self, *args):
        cmd = [os.path.join(PG_BINDIR, "pg_ctl")] + list(args)
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def cleanup_stale(self):
        """Stops and removes clusters left by harness processes that died (a CTest timeout
        kills the harness with SIGKILL, and pg_ctl's server outlives it)."""
        parent = os.path.dirname(self.dir)
        if not os.path.isdir(parent):
            return
        for d in os.listdir(parent):
            m = re.match(r"^pg-(\d+)$", d)
            if not m or os.path.exists("/proc/%s" % m.group(1)):
                continue
            path = os.path.join(parent, d)
            subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "stop", path],
                           stdin=subprocess.DEVNULL, capture_output=True)
            subprocess.run(["rm", "-rf", path])

    def start(self):
        if self.port is None:
            self.cleanup_stale()
            subprocess.run(["rm", "-rf", self.dir], check=True)
            os.makedirs(os.path.dirname(self.dir), exist_ok=True)
            for _ in range(3):
                self.port = t.free_port()
                if self._sh("start", self.dir, str(self.port), check=False).returncode == 0:
                    break
                self._sh("stop", self.dir, check=False)
            else:
                raise t.TestFailure("could not start a private Postgres in %s" % self.dir)
        else:
            self._sh("start", self.dir, str(self.port))
        return self

    def url(self, db="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def stop(self, mode="fast"):
        r = self._ctl("stop", "-D", self.dir, "-m", mode, "-w", "-t", "60")
        return r.returncode

    def is_up(self):
        try:
            c = t.pg_connect(self.url())
            c.close()
            return True
        except Exception:  # noqa: BLE001
            return False

    def destroy(self):
        self._sh("stop", self.dir, check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def env(self, base):
        e = dict(base)
        e.update(EPP_TEST_PG_URL=self.url(), EPP_TEST_PG_HOST="127.0.0.1",
                 EPP_TEST_PG_PORT=str(self.port), EPP_TEST_PG_DATA=self.dir,
                 EPP_TEST_PG_BINDIR=PG_BINDIR)
        return e


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------

class Outcomes:
    """Every event sent, and what the service answered for it. Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = {}      # event_id -> (user_id, event_name, valid, event dict)
        self.state = {}       # event_id -> "ok" | "failed" | "unknown"
        self.requests = 0
        self.statuses = {}    # HTTP status (or exception name) -> count
        self.max_latency = 0.0
        self.first = {"ok": 0, "failed": 0, "unknown": 0}   # first answer per event
        self.how = {}         # event_id -> [(path, status, sent at (epoch s), latency s)]

    def record_request(self, status, latency):
        with self.lock:
            self.requests += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if latency > self.max_latency:
                self.max_latency = latency

    def set(self, eid, outcome, retry=False):
        with self.lock:
            prev = self.state.get(eid)
            if not retry:
                self.first[outcome] += 1
            # ok (a promise) and failed (a definite refusal) are final; unknown can be upgraded.
            if prev in (None, "unknown"):
                self.state[eid] = outcome
            elif prev != outcome and outcome != "unknown":
                # A retry of an unknown event that is now refused (e.g. it was valid and the
                # retry got 400?) would be a contradiction worth seeing.
                self.state[eid] = prev

    def ids(self, outcome):
        with self.lock:
            return {e for e, s in self.state.items() if s == outcome}


_NAMES = ["page_view", "click", "signup", "purchase", "search", "logout", "add_to_cart"]


def make_event(valid=True, ts_spread_s=3 * 86400, pad=0):
    eid = str(uuid.uuid4())
    now_ms = int(time.time() * 1000)
    ev = {
        "event_id": eid,
        "user_id": "u%d" % random.randrange(300),
        "event_name": random.choice(_NAMES),
        "metadata": {"n": random.randrange(1 << 30), "big": 12345678901234567890, "x": 0.1,
                     "s": "é😀"},
    }
    ts = now_ms - random.randrange(ts_spread_s * 1000)
    if random.random() < 0.5:
        ev["timestamp"] = ts
    else:
        ev["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + \
            ".%03dZ" % (ts % 1000)
    if pad:
        ev["metadata"]["pad"] = "p" * pad
    if not valid:
        kind = random.randrange(3)
        if kind == 0:
            ev["timestamp"] = now_ms + 3 * 86400 * 1000     # far future: 400
        elif kind == 1:
            ev["event_name"] = ""                           # empty: 400
        else:
            ev["evnt"] = "typo"                              # unknown field: 400
    return ev


_KAFKA_CODES = ("kafka_unavailable", "queue_full", "out_of_memory", "shutting_down",
                "unavailable", "internal")


class Loader:
    """Threads POSTing events to epp-ingest at a steady rate until stop().

    port_fn() gives the current ingest port (it survives restarts on the same port)."""

    def __init__(self, outcomes, port_fn, rps=200, threads=4, batch_frac=0.25, batch_size=20,
                 invalid_frac=0.03, timeout=15.0, pad=0, ts_spread_s=3 * 86400):
        self.o = outcomes
        self.port_fn = port_fn
        self.rps = rps
        self.nthreads = threads
        self.batch_frac = batch_frac
        self.batch_size = batch_size
        self.invalid_frac = invalid_frac
        self.timeout = timeout
        self.pad = pad
        self.ts_spread_s = ts_spread_s
        self.stop_ev = threading.Event()
        self.threads = []
        self.errors = []

    def start(self):
        for i in range(self.nthreads):
            th = threading.Thread(target=self._run, args=(i,), daemon=True)
            th.start()
            self.threads.append(th)
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(self.timeout + 10)
        self.threads = []

    def _events(self, n):
        evs = [make_event(random.random() >= self.invalid_frac, self.ts_spread_s, self.pad)
               for _ in range(n)]
        with self.o.lock:
            for ev in evs:
                self.o.events[ev["event_id"]] = ev
        return evs

    def _run(self, idx):
        period = self.nthreads / float(self.rps)
        conn = None
        next_t = time.monotonic() + random.random() * period
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if next_t > now:
                time.sleep(min(next_t - now, 0.2))
                continue
            next_t += period
            if next_t < now - 1.0:          # fell behind (an outage): do not burst afterwards
                next_t = now
            batch = random.random() < self.batch_frac
            evs = self._events(self.batch_size if batch else 1)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port_fn(),
                                                      timeout=self.timeout)
                conn = send_events(self.o, conn, evs, batch)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
                conn = None


def send_events(o, conn, evs, batch, retry=False):
    """POSTs evs (one event, or a batch) on conn and records each outcome. Returns the
    connection to reuse (None when it must be reopened)."""
    if batch:
        path, body = "/events/batch", json.dumps(evs).encode()
    else:
        path, body = "/events", json.dumps(evs[0]).encode()
    t0 = time.monotonic()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
        keep = not resp.will_close
    except Exception as e:  # noqa: BLE001 - timeout, refused, reset: all unknown
        o.record_request(type(e).__name__, time.monotonic() - t0)
        for ev in evs:
            o.set(ev["event_id"], "unknown", retry)
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        if isinstance(e, (ConnectionRefusedError, ConnectionResetError)):
            time.sleep(0.05)
        return None
    lat = time.monotonic() - t0
    o.record_request(status, lat)
    with o.lock:
        for i, ev in enumerate(evs):
            o.how.setdefault(ev["event_id"], []).append(
                ("%s[%d]" % (path, i) if batch else path, status, round(time.time() - lat, 3),
                 round(lat, 3)))
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if batch and isinstance(parsed, dict) and isinstance(parsed.get("results"), list) \
            and len(parsed["results"]) == len(evs):
        for ev, r in zip(evs, parsed["results"]):
            err = r.get("error") if isinstance(r, dict) else None
            if err is None and r.get("event_id") == ev["event_id"]:
                o.set(ev["event_id"], "ok", retry)
            elif err is not None and err.get("code") in _KAFKA_CODES:
                o.set(ev["event_id"], "unknown", retry)
            elif err is not None and status < 500:
                o.set(ev["event_id"], "failed", retry)
            else:
                o.set(ev["event_id"], "unknown", retry)
    else:
        if status == 202 and not batch:
            out = "ok" if isinstance(parsed, dict) and \
                parsed.get("event_id") == evs[0]["event_id"] else "unknown"
        elif 400 <= status < 500:
            out = "failed"
        else:
            out = "unknown"
        for ev in evs:
            o.set(ev["event_id"], out, retry)
    if not keep:
        conn.close()
        return None
    return conn


# ---------------------------------------------------------------------------------------------
# The stack of one scenario
# ---------------------------------------------------------------------------------------------

def _die_with_parent():
    """In the child: SIGKILL when the harness dies (a CTest timeout kills it with SIGKILL, and
    orphaned services would hold ports and CPU)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc(t.ServiceProcess):
    """t.ServiceProcess whose child dies with the harness."""

    def start(self, wait_healthy=True):
        t.check(os.access(self.program, os.X_OK), "not built: %s" % self.program)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.program] + self.args, env=self.child_env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.cwd,
                                     preexec_fn=_die_with_parent)
        if wait_healthy and self.port is not None:
            self.wait_healthy()
        return self


class Svc:
    """A service that the scenario may kill, stop and restart on the same port."""

    def __init__(self, h, kind, name, extra):
        self.h, self.kind, self.name, self.extra = h, kind, name, dict(extra)
        self.port = t.free_port()
        self.proc = None
        self.killed_on_purpose = False
        self.starts = 0

    def start(self, wait=True, timeout=30.0):
        env = self.h.service_env(self.kind)
        env.update(self.extra)
        self.proc = Proc(self.h.kenv, "epp-" + self.kind, port=self.port,
                                     extra_env=env, log_name="%s-%s" % (self.h.name, self.name),
                                     start_timeout=timeout)
        self.starts += 1
        for attempt in range(20):
            try:
                self.proc.start(wait_healthy=wait)
                break
            except t.TestFailure:
                # The port may still be held by the process just killed: retry briefly.
                if attempt == 19 or "Address already in use" not in self.proc.log_text():
                    raise
                time.sleep(0.25)
        self.killed_on_purpose = False
        return self

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def signal(self, sig):
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.killed_on_purpose = True
        self.proc.send_signal(sig)

    def kill(self):
        self.killed_on_purpose = True
        return self.proc.kill()

    def terminate(self, timeout=30.0):
        self.killed_on_purpose = True
        return self.proc.stop(timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def metric(self, name, labels=None):
        """Sum of the samples of a Prometheus metric (None when unreachable)."""
        try:
            return t.metric_value(self.url(""), name, labels)
        except (OSError, t.TestFailure):
            return None


class Harness:
    """One scenario's stack and traffic. Scenario functions drive it; finish() checks."""

    def __init__(self, base_env, pg, name, full=False, brokers=1, partitions=4, consumers=1,
                 ingest_env=None, consumer_env=None, analytics=True, analytics_env=None):
        self.base_env = base_env
        self.pg = pg
        self.name = t.unique_name(name)[:48]
        self.scenario = name
        self.full = full
        self.brokers = brokers
        self.partitions = partitions
        self.topic = "events"
        self.dlq = "events.dlq"
        self.group = self.name + "_g"
        self.ingest_env = dict(ingest_env or {})
        self.consumer_env = dict(consumer_env or {})
        self.analytics_env = dict(analytics_env or {})
        self.ncons = consumers
        if full and partitions == 4:
            # The mock keeps ~5 MiB per partition: the full load (~60,000 events of ~350 bytes)
            # would overflow 4 partitions whenever the consumer lags (after a kill, during a
            # rebalance) and messages would expire unread. 12 partitions keep it all.
            self.partitions = 12
        self.want_analytics = analytics
        self.o = Outcomes()
        self.notes = []
        self.problems = []
        self.loader = None
        self.broker = None
        self.kenv = None
        self.db_url = None
        self.consumers = []
        self.ingest = None
        self.analytics = None
        self.expect_gap = False

    # -- set-up --------------------------------------------------------------------------------
    def service_env(self, kind):
        e = {
            "DATABASE_URL": self.db_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kenv["KAFKA_BOOTSTRAP_SERVERS"],
            "KAFKA_TOPIC": self.topic,
            "KAFKA_DLQ_TOPIC": self.dlq,
            "KAFKA_GROUP_ID": self.group,
            "LOG_LEVEL": "info",
        }
        if kind == "consumer":
            e["KAFKA_SESSION_TIMEOUT_MS"] = "4000"
            e["RETRY_MAX_BACKOFF_MS"] = "1000"
            e["PG_CONNECT_TIMEOUT_S"] = "2"
            e.update(self.consumer_env)
        if kind == "ingest":
            e["KAFKA_DELIVERY_TIMEOUT_MS"] = "5000"
            e["SHUTDOWN_TIMEOUT_MS"] = "10000"
            e.update(self.ingest_env)
            if os.environ.get("EPP_CHAOS_INGEST_LOG_LEVEL"):
                e["LOG_LEVEL"] = os.environ["EPP_CHAOS_INGEST_LOG_LEVEL"]
            extra = os.environ.get("EPP_CHAOS_PRODUCER_CONFIG")   # e.g. debug=eos, to diagnose
            if extra:
                e["KAFKA_PRODUCER_CONFIG"] = ",".join(
                    x for x in (e.get("KAFKA_PRODUCER_CONFIG"), extra) if x)
        if kind == "analytics":
            e.update(self.analytics_env)
        return e

    def start(self):
        self.broker = t.DevBroker(self.base_env, brokers=self.brokers, partitions=self.partitions,
                                  log_name="%s-devbroker" % self.name)
        self.broker.proc.__class__ = Proc   # dies with the harness too
        self.kenv = self.broker.start().env
        self.db_url = t.create_database(self.pg.env(self.base_env), self.name)
        for i in range(self.ncons):
            self.consumers.append(Svc(self, "consumer", "consumer%d" % i, {}).start())
        t.wait_for(self.schema_ready, 30, msg="the consumer's migrations (public.events)")
        self.ingest = Svc(self, "ingest", "ingest", {}).start()
        hdrs = {}
        if self.ingest_env.get("INGEST_API_KEYS"):
            hdrs["Authorization"] = "Bearer " + self.ingest_env["INGEST_API_KEYS"].split(",")[0]
        t.wait_for(lambda: t.http_request("GET", self.ingest.url("/ready"), headers=hdrs,
                                          timeout=2)[0] == 200, 20, msg="epp-ingest /ready")
        if self.want_analytics:
            self.analytics = Svc(self, "analytics", "analytics", {}).start()
            ahdrs = {}
            if self.analytics_env.get("ANALYTICS_API_KEYS"):
                ahdrs["Authorization"] = "Bearer " + \
                    self.analytics_env["ANALYTICS_API_KEYS"].split(",")[0]
            t.wait_for(lambda: t.http_request("GET", self.analytics.url("/ready"), headers=ahdrs,
                                              timeout=2)[0] == 200, 30,
                       msg="epp-analytics /ready")
        return self

    @property
    def consumer(self):
        return self.consumers[0]

    def services(self):
        return [s for s in self.consumers + [self.ingest, self.analytics] if s is not None]

    # -- traffic -------------------------------------------------------------------------------
    def load(self, **kw):
        kw.setdefault("rps", 400 if self.full else 150)
        kw.setdefault("threads", 6 if self.full else 4)
        self.loader = Loader(self.o, lambda: self.ingest.port, **kw).start()
        return self.loader

    def stop_load(self):
        if self.loader:
            self.loader.stop()

    def retry_unknown(self, attempts=3):
        """Resends every unknown (valid) event once more with its event_id, like a client."""
        for _ in range(attempts):
            unknown = sorted(self.o.ids("unknown"))
            if not unknown:
                return
            evs = [self.o.events[e] for e in unknown]
            conn = None
            for i in range(0, len(evs), 100):
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.ingest.port, timeout=30)
                conn = send_events(self.o, conn, evs[i:i + 100], True, retry=True)
            if conn:
                conn.close()
            if self.o.ids("unknown"):
                time.sleep(1.0)

    def sleep(self, s):
        time.sleep(s * (3 if self.full else 1))

    def problem(self, msg):
        self.problems.append(msg)

    def note(self, msg):
        self.notes.append(msg)

    # -- the check -----------------------------------------------------------------------------
    def read_topic(self, topic=None, timeout=60.0):
        """{event_id: count} over every message now in the topic (low to high watermark)."""
        from confluent_kafka import Consumer, TopicPartition, KafkaError
        topic = topic or self.topic
        c = Consumer({"bootstrap.servers": self.kenv["KAFKA_BOOTSTRAP_SERVERS"],
                      "group.id": t.unique_name("chaos_reader"), "enable.auto.commit": False,
                      "enable.partition.eof": True, "auto.offset.reset": "earliest"})
        counts = {}
        total = 0
        try:
            md = c.list_topics(topic, timeout=10)
            parts = sorted(md.topics[topic].partitions.keys())
            assign, ends = [], {}
            for p in parts:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if hi > lo:
                    assign.append(TopicPartition(topic, p, lo))
                    ends[p] = hi
            if not assign:
                return counts, 0
            c.assign(assign)
            done = set()
            deadline = time.monotonic() + timeout
            while len(done) < len(ends) and time.monotonic() < deadline:
                for m in c.consume(num_messages=5000, timeout=0.5):
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            done.add(m.partition())
                        continue
                    total += 1
                    if m.offset() >= ends[m.partition()] - 1:
                        done.add(m.partition())
                    try:
                        eid = json.loads(m.value())["event_id"]
                    except Exception:  # noqa: BLE001
                        eid = "<undecodable>"
                    counts[eid] = counts.get(eid, 0) + 1
            if len(done) < len(ends):
                self.problem("could not read the whole topic in %.0fs" % timeout)
        finally:
            c.close()
        return counts, total

    def db_rows(self):
        conn = t.pg_connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT event_id::text, count(*), min(user_id), min(event_name) "
                            "FROM public.events GROUP BY 1")
                return {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}
        finally:
            conn.close()

    def schema_ready(self):
        conn = t.pg_connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('public.events') IS NOT NULL AND "
                            "to_regclass('public.epp_user_day') IS NOT NULL")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def count_rows(self):
        conn = t.pg_connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM public.events")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def wait_drained(self, want, timeout=120.0, still_s=20.0):
        """Waits until public.events holds `want` rows, or the count has not moved for still_s
        seconds (then the check reports what is missing)."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            try:
                n = self.count_rows()
            except Exception:  # noqa: BLE001 - the database may be coming back
                n = last
            if n >= want:
                return n
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > still_s:
                return n
            time.sleep(0.25)
        return last

    def split_expired(self, missing, topic_counts, marks):
        """For a scenario where the broker's retention deleted unread messages (expect_gap):
        splits the ok events missing from public.events into (lost, expired). Expired events are
        the broker's doing, reported loudly by the consumer, not epp's loss: the ones still in
        the topic wait behind the gap of a partition whose stored offset is below the low
        watermark, and the ones gone from the topic number at most the gaps' total size.
        Anything else is lost."""
        conn = t.pg_connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT partition, next_offset FROM public.epp_consumer_offsets "
                            "WHERE topic = %s", (self.topic,))
                stored = dict(cur.fetchall())
        finally:
            conn.close()
        gaps = {p: lo - stored.get(p, 0) for p, (lo, _) in marks.items()
                if lo > stored.get(p, 0)}
        if not gaps:
            self.problem("events are missing but no partition has a retention gap "
                         "(stored offsets %s, watermarks %s)" % (stored, marks))
            return missing, []
        held = [e for e in missing if e in topic_counts]
        gone = [e for e in missing if e not in topic_counts]
        if len(gone) > sum(gaps.values()):
            self.problem("%d missing events are gone from the topic, more than the %d messages "
                         "the retention deleted" % (len(gone), sum(gaps.values())))
            return missing, []
        self.note("expired %d: %d deleted by the broker's retention before they were read "
                  "(gaps %s: stored offset -> low watermark), %d behind the gap in the "
                  "stalled partition" %
                  (len(missing), len(gone),
                   {p: "%d->%d" % (stored.get(p, 0), marks[p][0]) for p in gaps}, len(held)))
        return [], missing

    def finish(self):
        """Stops the load, resends unknowns, waits for the drain, checks. Returns the result."""
        self.stop_load()
        self.ensure_up()
        self.retry_unknown()
        topic_counts, topic_msgs = self.read_topic()
        marks = t.topic_offsets(self.kenv, self.topic)
        expired = sum(lo for lo, _ in marks.values())
        if expired:
            self.note("the dev broker's retention dropped %d messages (low watermarks %s): "
                      "events among them that were not stored yet cannot be seen in the topic" %
                      (expired, {p: lo for p, (lo, _) in marks.items()}))
        if self.expect_gap:
            rows = self.count_rows()
        else:
            rows = self.wait_drained(len(topic_counts))
        db = self.db_rows()
        ok, failed, unknown = self.o.ids("ok"), self.o.ids("failed"), self.o.ids("unknown")
        lost = sorted(e for e in ok if e not in db)
        expired = []
        if self.expect_gap and lost:
            lost, expired = self.split_expired(lost, topic_counts, marks)
        phantom = sorted(e for e in failed if e in db)
        strangers = sorted(e for e in db if e not in self.o.events)
        duplicated = sum(n - 1 for n, _, _ in db.values() if n > 1)
        corrupted = [e for e in ok if e in db and
                     (db[e][1], db[e][2]) != (self.o.events[e]["user_id"],
                                              self.o.events[e]["event_name"])]
        not_in_topic = sum(1 for e in ok if e not in topic_counts)
        topic_dups = sum(n - 1 for n in topic_counts.values() if n > 1)
        conn = t.pg_connect(self.db_url)
        try:
            rollup_problems = epp_rollups.check(conn)
        finally:
            conn.close()
        dlq_counts, _ = self.read_topic(self.dlq, timeout=20)
        crashed = [s.name for s in self.services() if not s.alive() and not s.killed_on_purpose]
        for s in self.consumers:
            if s.alive():
                vals = {m: s.metric("epp_consumer_" + m) for m in
                        ("retries_total", "duplicates_skipped_total", "commit_unknown_total",
                         "offset_reset_errors_total")}
                self.note("%s (since its last start): %s" % (s.name, ", ".join(
                    "%s=%d" % (k, v) for k, v in vals.items() if v)))
        res = {
            "scenario": self.scenario,
            "requests": self.o.requests,
            "ok": self.o.first["ok"], "failed": self.o.first["failed"],
            "unknown": self.o.first["unknown"],
            "final_ok": len(ok), "final_unknown": len(unknown),
            "lost": len(lost), "phantom": len(phantom) + len(strangers),
            "duplicated": duplicated, "expired": len(expired),
            "rows": rows, "topic_msgs": topic_msgs, "topic_dups": topic_dups,
            "not_in_topic": not_in_topic, "dlq": sum(dlq_counts.values()),
            "rollups": "exact" if not rollup_problems else "DIFF(%d)" % len(rollup_problems),
            "corrupted": len(corrupted), "crashed": crashed,
            "max_latency_s": round(self.o.max_latency, 2),
            "statuses": {str(k): v for k, v in sorted(self.o.statuses.items(),
                                                      key=lambda kv: str(kv[0]))},
            "notes": list(self.notes), "problems": list(self.problems),
        }
        if lost:
            self.problem("lost (first 5): %s; %d of the lost are not in the topic either; "
                         "details in %s" % (lost[:5], sum(1 for e in lost if e not in topic_counts),
                                            self.dump(lost, "lost", topic_counts)))
        if phantom:
            self.problem("phantom (first 5): %s" % phantom[:5])
        if strangers:
            self.problem("rows never sent (first 5): %s" % strangers[:5])
        if duplicated:
            self.problem("%d duplicate rows" % duplicated)
        if rollup_problems:
            self.problem("rollups differ: " + "; ".join(rollup_problems[:5]))
        if corrupted:
            self.problem("corrupted rows (first 5): %s" % corrupted[:5])
        if crashed:
            for s in self.services():
                if s.name in crashed:
                    self.problem("%s crashed (exit %s); log tail:\n%s" %
                                 (s.name, s.proc.proc.returncode, s.proc.log_tail(15)))
        if res["dlq"]:
            self.problem("%d messages in the DLQ (ingest validated them all)" % res["dlq"])
        res["problems"] = list(self.problems)
        res["passed"] = not self.problems
        return res

    def dump(self, ids, what, topic_counts=None):
        """Writes what is known about these events to BUILD/chaos/<name>-<what>.json."""
        path = os.path.join(self.base_env["EPP_BUILD_DIR"], "chaos",
                            "%s-%s.json" % (self.name, what))
        with open(path, "w") as f:
            json.dump([{"event": self.o.events.get(e), "requests": self.o.how.get(e),
                        "in_topic": (topic_counts or {}).get(e, 0)}
                       for e in ids], f, indent=1)
        return path

    def ensure_up(self):
        """Every service the scenario left stopped (SIGSTOP) or dead is resumed / restarted, so
        that the drain can complete (a crash is still reported by finish())."""
        for s in self.services():
            if s.proc is None:
                continue
            try:
                s.proc.proc.send_signal(signal.SIGCONT)
            except Exception:  # noqa: BLE001
                pass

    def stop(self):
        self.stop_load()
        for s in [self.ingest, self.analytics] + self.consumers:
            if s is not None and s.proc is not None:
                try:
                    s.proc.proc.send_signal(signal.SIGCONT)
                except Exception:  # noqa: BLE001
                    pass
                s.proc.stop(timeout=20)
        if self.broker:
            self.broker.stop()
        if self.db_url and not os.environ.get("EPP_TEST_KEEP_DB"):
            try:
                t.drop_database(self.pg.env(self.base_env), self.db_url)
            except Exception:  # noqa: BLE001 - Postgres may be down after a failed scenario
                pass


def format_line(r):
    return "%-28s %8d %8d %7d %8d %5d %8d %11d  %s" % (
        r["scenario"], r["requests"], r["ok"], r["failed"], r["unknown"], r["lost"], r["phantom"],
        r["duplicated"], "passed" if r["passed"] else "failed")


HEADER = "%-28s %8s %8s %7s %8s %5s %8s %11s  %s" % (
    "scenario", "requests", "ok", "failed", "unknown", "lost", "phantom", "duplicated", "result")


def format_details(r):
    d = ("# rows=%d topic_msgs=%d topic_dups=%d expired=%d rollups=%s retried_ok=%d "
         "still_unknown=%d max_latency=%.2fs statuses=%s" %
         (r["rows"], r["topic_msgs"], r["topic_dups"], r.get("expired", 0), r["rollups"],
          r["final_ok"] - r["ok"], r["final_unknown"], r["max_latency_s"],
          json.dumps(r["statuses"], separators=(",", ":"))))
    for n in r["notes"]:
        d += "\n#   note: " + n
    for p in r["problems"]:
        d += "\n#   PROBLEM: " + p
    return d


SKIP = 77   # CTest SKIP_RETURN_CODE


def markdown_table(path):
    last = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                last[(r.get("mode", "short"), r["scenario"])] = r
    print("| mode | scenario | requests | ok | failed | unknown | lost | phantom | duplicated "
          "| expired | topic dups | rollups | s | result |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|")
    for (mode, name), r in sorted(last.items(), key=lambda kv: (kv[0][0] != "short",)):
        print("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s |" % (
            mode, name, r["requests"], r["ok"], r["failed"], r["unknown"], r["lost"],
            r["phantom"], r["duplicated"], r.get("expired", "-"), r.get("topic_dups", "-"),
            r.get("rollups", "-"),
            r.get("seconds", "-"), "passed" if r["passed"] else "**failed**"))
    return 0


def full_requested():
    """The heavy versions are registered in CTest with label chaos-full; `make test` runs every
    label, so they only run when asked for: EPP_TEST_FULL=1, or a ctest parent process whose
    command line selects the chaos-full label (`make chaos` = ctest -L chaos-full)."""
    if os.environ.get("EPP_TEST_FULL") == "1":
        return True
    try:
        with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    if not args or not os.path.basename(args[0]).startswith(b"ctest"):
        return True    # run by hand with --full
    for i, arg in enumerate(args):
        if arg in (b"-L", b"--label-regex") and i + 1 < len(args) and b"full" in args[i + 1]:
            return True
        if arg.startswith(b"-L") and b"full" in arg:
            return True
    return False


# Scenarios live in scenarios.py; imported here so that `harness.py` is the one entry point.
def main(argv=None):
    import scenarios
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--full", action="store_true", default=FULL,
                    help="heavy versions (longer, more faults); also EPP_TEST_FULL=1")
    ap.add_argument("--group", help="run the scenarios of one group: " +
                    ", ".join(sorted(scenarios.GROUPS)))
    ap.add_argument("--scenarios", help="comma-separated scenario names")
    ap.add_argument("--results", help="append each result as one JSON line to this file")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", metavar="RESULTS",
                    help="print a Markdown table of a --results file (the last run of each "
                    "scenario and mode) and exit")
    a = ap.parse_args(argv)
    if a.table:
        return markdown_table(a.table)
    if a.list:
        for g, names in sorted(scenarios.GROUPS.items()):
            print("%s: %s" % (g, " ".join(names)))
        return 0
    if a.full and not full_requested():
        print("chaos: the full versions run with `make chaos` (ctest -L chaos-full) or "
              "EPP_TEST_FULL=1; skipped")
        return SKIP
    names = list(scenarios.ALL)
    if a.group:
        names = scenarios.GROUPS[a.group]
    if a.scenarios:
        names = a.scenarios.split(",")
    base_env = t.load_env(a.build_dir)
    pg = PgCluster(base_env["EPP_BUILD_DIR"]).start()
    results = []
    try:
        for n in names:
            fn = scenarios.ALL[n]
            t0 = time.monotonic()
            log("scenario %s (%s) ..." % (n, "full" if a.full else "short"))
            try:
                r = fn(base_env, pg, a.full)
            except Exception as e:  # noqa: BLE001 - a scenario that blew up is a failed one
                traceback.print_exc()
                r = {"scenario": n, "requests": 0, "ok": 0, "failed": 0, "unknown": 0,
                     "lost": 0, "phantom": 0, "duplicated": 0, "passed": False,
                     "problems": ["scenario raised: %r" % e], "notes": []}
            r["seconds"] = round(time.monotonic() - t0, 1)
            r["mode"] = "full" if a.full else "short"
            results.append(r)
            print(HEADER if len(results) == 1 else "", end="\n" if len(results) == 1 else "")
            print(format_line(r), flush=True)
            if "rows" in r:
                print(format_details(r), flush=True)
            else:
                for p in r["problems"]:
                    print("#   PROBLEM: " + p)
            if a.results:
                with open(a.results, "a") as f:
                    f.write(json.dumps(r) + "\n")
            if not pg.is_up():   # a scenario that left Postgres down must not fail the next
                pg.start()
    finally:
        pg.destroy()
    print()
    print(HEADER)
    for r in results:
        print(format_line(r))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
