#!/usr/bin/env python3
"""epp's fault-injection harness: the whole local stack under load, one fault per scenario, and a
loss / phantom / duplicate check against Postgres afterwards.

    harness.py BUILD_DIR [--full] [--kafka cluster|fixture|dev] [--group G | --scenarios a,b]
               [--results FILE] [--list] [--table RESULTS]

Every scenario runs on its OWN stack: a private Postgres cluster (one per harness process, created
with scripts/pg.sh under BUILD_DIR/chaos/, so restarting it never disturbs other tests), its own
Kafka topics, a fresh database, and epp-consumer, epp-ingest and epp-analytics on free ports.
Kafka (brokers.py): scenarios that fault brokers run on a private 3-node Apache Kafka cluster
shared by the harness process; mock-only scenarios on a private epp-devbroker; the others where
--kafka says (the private cluster by default; `fixture`, the CTest fixture's node, for the short
suite, which may never be faulted and is not).

Traffic (traffic.py): Python threads POST single events and batches, each event with a
client-chosen event_id, a few percent invalid on purpose; each event's answer is ok, failed or
unknown. Each scenario marks its fault windows (Harness.fault). Once the faults are over, every
unknown event is resent with the same event_id, as a client would, until it is acknowledged or
refused (check.py: an event still unknown after that fails the scenario).

The check (check.py) then requires: no acknowledged event lost, no refused or foreign event
stored, none stored twice, rollups and user bitmaps exact, no row corrupted, no service or Kafka
node dead without a planned kill, every event acknowledged or definitely refused, acknowledgements before the first
fault and after the last, and the stored offsets never moving backwards.

Output: one line per scenario
    scenario requests ok failed unknown lost phantom duplicated passed|failed
followed by '#' lines with the details. Exit status 1 when any scenario failed.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import epp_testlib as t  # noqa: E402
import check  # noqa: E402
from brokers import Context, Dev, Proc  # noqa: E402
from traffic import Loader, Outcomes, send_events  # noqa: E402

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
# The services
# ---------------------------------------------------------------------------------------------

class Svc:
    """A service that the scenario may kill, stop and restart on the same port. A death the
    scenario did not cause is a crash, whenever it is noticed: at the next planned kill or
    restart (a service that died between two planned kills), or at the end."""

    def __init__(self, h, kind, name, extra):
        self.h, self.kind, self.name, self.extra = h, kind, name, dict(extra)
        self.port = t.free_port()
        self.proc = None
        self.killed_on_purpose = False
        self.starts = 0
        self.crashes = []     # one message per unplanned death

    def check_unplanned(self, before):
        """Records a crash when the process is dead and the scenario did not kill it."""
        p = self.proc
        if p is None or p.proc is None or self.killed_on_purpose or p.proc.poll() is None:
            return
        msg = "%s died without a planned kill (exit %s), noticed %s; log tail:\n%s" % (
            self.name, p.proc.returncode, before, p.log_tail(15))
        self.crashes.append(msg)
        self.h.problem(msg)
        self.killed_on_purpose = True     # reported once

    def start(self, wait=True, timeout=30.0):
        self.check_unplanned("before a restart")
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
        self.check_unplanned("before a planned signal")
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.killed_on_purpose = True
        self.proc.send_signal(sig)

    def kill(self):
        self.check_unplanned("before a planned kill")
        self.killed_on_purpose = True
        return self.proc.kill()

    def terminate(self, timeout=30.0):
        self.check_unplanned("before a planned stop")
        self.killed_on_purpose = True
        return self.proc.stop(timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def log_tail(self, lines=40):
        return self.proc.log_tail(lines) if self.proc else ""

    def metric(self, name, labels=None):
        """Sum of the samples of a Prometheus metric (None when unreachable)."""
        try:
            return t.metric_value(self.url(""), name, labels)
        except (OSError, t.TestFailure):
            return None


class OffsetWatcher:
    """Samples the consumer group's stored offsets (public.epp_consumer_offsets) every 0.1 s for
    the whole scenario: any offset that moves backwards is recorded, and advanced() tells which
    partitions some consumer stored progress for within a time window."""

    def __init__(self, db_url, group, topic, interval=0.1):
        self.db_url, self.group, self.topic, self.interval = db_url, group, topic, interval
        self.samples = []        # (wall-clock s, {partition: next_offset})
        self.backwards = []      # (partition, before, after, wall-clock s)
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.th.start()
        return self

    def stop(self):
        self.stop_ev.set()
        if self.th.is_alive():
            self.th.join(10)

    def _run(self):
        conn, high = None, {}
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = t.pg_connect(self.db_url)
                with conn.cursor() as cur:
                    cur.execute("SELECT partition, next_offset FROM public.epp_consumer_offsets "
                                "WHERE group_id = %s AND topic = %s", (self.group, self.topic))
                    now = dict(cur.fetchall())
                when = time.time()
                for p, off in now.items():
                    if off < high.get(p, -1):
                        self.backwards.append((p, high[p], off, when))
                    high[p] = max(off, high.get(p, -1))
                self.samples.append((when, now))
            except Exception:  # noqa: BLE001 - Postgres may be restarting
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            self.stop_ev.wait(self.interval)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def at(self, when):
        """The last sample taken at or before `when` ({} before the first)."""
        last = {}
        for ts, offs in list(self.samples):
            if ts > when:
                break
            last = offs
        return last

    def advanced(self, t0, t1):
        """Partitions whose stored offset grew between t0 and t1."""
        a, b = self.at(t0), self.at(t1)
        return {p for p, off in b.items() if off > a.get(p, -1)}


# ---------------------------------------------------------------------------------------------
# One scenario's stack and traffic
# ---------------------------------------------------------------------------------------------

class Harness:
    """One scenario's stack and traffic. Scenario functions drive it; finish() checks.

    kafka: a backend from brokers.py (Context.backend); None means a private dev broker, as the
    hostile-HTTP and API-key tests use."""

    def __init__(self, base_env, pg, name, full=False, brokers=1, partitions=None, consumers=1,
                 ingest_env=None, consumer_env=None, analytics=True, analytics_env=None,
                 kafka=None, topic_config=None):
        self.base_env = base_env
        self.pg = pg
        self.name = t.unique_name(name)[:48]
        self.scenario = name
        self.full = full
        self.brokers = brokers
        self.kafka = kafka if kafka is not None else Dev()
        if partitions is None:
            # The mock keeps ~5 MiB per partition: the full load (~60,000 events of ~350 bytes)
            # would overflow 4 partitions whenever the consumer lags (after a kill, during a
            # rebalance) and messages would expire unread. 12 partitions keep it all. Apache
            # Kafka keeps everything: 6 partitions, two led by each node of the cluster.
            partitions = (12 if full else 4) if self.kafka.kind == "dev" else 6
        self.partitions = partitions
        self.topic_config = dict(topic_config or {})
        self.topic = self.dlq = None
        self.group = self.name + "_g"
        self.ingest_env = dict(ingest_env or {})
        self.consumer_env = dict(consumer_env or {})
        self.analytics_env = dict(analytics_env or {})
        self.ncons = consumers
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
        self.watcher = None
        self.expect_gap = False
        self.faults = []          # (start, end, description), wall-clock seconds
        self.external = None      # traffic the Loader did not send (scenarios_kafka.node_kill_load)
        self.retry_patience = 90.0   # seconds of resending unknown events after the faults
        self.t0 = time.time()

    # -- set-up --------------------------------------------------------------------------------
    def service_env(self, kind):
        e = {
            "DATABASE_URL": self.db_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kenv["KAFKA_BOOTSTRAP_SERVERS"],
            "KAFKA_TOPIC": self.topic,
            "KAFKA_DLQ_TOPIC": self.dlq,
            "KAFKA_GROUP_ID": self.group,
            "KAFKA_TOPIC_PARTITIONS": str(self.partitions),
            "LOG_LEVEL": "info",
        }
        if kind == "consumer":
            # Apache Kafka refuses sessions shorter than group.min.session.timeout.ms (6 s).
            e["KAFKA_SESSION_TIMEOUT_MS"] = "4000" if self.kafka.kind == "dev" else "6000"
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

    @property
    def session_timeout_s(self):
        return int(self.service_env("consumer")["KAFKA_SESSION_TIMEOUT_MS"]) / 1000.0

    def make_ingest(self):
        """The ingest service; test_check.py replaces it with a fake to test the check."""
        return Svc(self, "ingest", "ingest", {}).start()

    def start(self):
        self.kenv = self.kafka.begin(self)
        self.db_url = t.create_database(self.pg.env(self.base_env), self.name)
        for i in range(self.ncons):
            self.consumers.append(Svc(self, "consumer", "consumer%d" % i, {}).start())
        t.wait_for(self.schema_ready, 30, msg="the consumer's migrations (public.events)")
        self.watcher = OffsetWatcher(self.db_url, self.group, self.topic).start()
        self.ingest = self.make_ingest()
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

    def wait_acks(self, n=200, since=None, timeout=60.0):
        """Waits until n events sent at or after `since` (default: now) were acknowledged on
        their first answer: the traffic is flowing, however slow the machine is today."""
        since = time.time() if since is None else since
        try:
            t.wait_for(lambda: self.o.acks(sent_from=since) >= n, timeout, interval=0.2,
                       msg="%d acknowledgements" % n)
        except t.TestFailure:
            self.problem("fewer than %d events acknowledged within %.0fs (statuses %s)" %
                         (n, timeout, self.o.statuses))

    def stop_load(self):
        if self.loader:
            self.loader.stop()

    def retry_unknown(self):
        """Resends every unknown event with its event_id, like a client, in rounds a second
        apart, until each is acknowledged or refused or retry_patience seconds have passed."""
        deadline = time.monotonic() + self.retry_patience
        rounds = 0
        while time.monotonic() < deadline:
            unknown = sorted(self.o.ids("unknown"))
            if not unknown:
                break
            rounds += 1
            evs = [self.o.events[e] for e in unknown]
            conn = None
            for i in range(0, len(evs), 100):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.ingest.port,
                                                          timeout=30)
                    conn = send_events(self.o, conn, evs[i:i + 100], True, retry=True)
                except OSError:
                    conn = None
            if conn:
                conn.close()
            if self.o.ids("unknown"):
                time.sleep(1.0)
        if rounds:
            self.note("resent unknown events in %d round(s); %d still unknown" %
                      (rounds, len(self.o.ids("unknown"))))

    def sleep(self, s):
        time.sleep(s * (3 if self.full else 1))

    def problem(self, msg):
        self.problems.append(msg)

    def note(self, msg):
        self.notes.append(msg)

    def clock(self):
        """Seconds since the harness object was made, for notes."""
        return "t+%.1fs" % (time.time() - self.t0)

    @contextlib.contextmanager
    def fault(self, what):
        """Marks a fault window: `with h.fault("SIGKILL node 2"): ...`. The check requires
        acknowledgements before the first window and after the last (check.py)."""
        start = time.time()
        try:
            yield start
        finally:
            self.faults.append((start, time.time(), what))

    # -- reading the outcome -------------------------------------------------------------------
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
                            "to_regclass('public.epp_user_bitmap_day') IS NOT NULL")
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

    def finish(self):
        """Stops the load, resends unknowns, waits for the drain, checks (check.py)."""
        return check.finish(self)

    def ensure_up(self):
        """Every service and Kafka node the scenario left stopped (SIGSTOP) is resumed, so that
        the drain can complete (a crash is still reported by the check)."""
        for s in self.services():
            if s.proc is None:
                continue
            try:
                s.proc.proc.send_signal(signal.SIGCONT)
            except Exception:  # noqa: BLE001
                pass
        self.kafka.resume(self)

    def stop(self):
        self.stop_load()
        if self.watcher:
            self.watcher.stop()
        for s in [self.ingest, self.analytics] + self.consumers:
            if s is not None and s.proc is not None:
                try:
                    s.proc.proc.send_signal(signal.SIGCONT)
                except Exception:  # noqa: BLE001
                    pass
                s.proc.stop(timeout=20)
        if self.kenv is not None:
            self.kafka.end(self)
        if self.db_url and not os.environ.get("EPP_TEST_KEEP_DB"):
            try:
                t.drop_database(self.pg.env(self.base_env), self.db_url)
            except Exception:  # noqa: BLE001 - Postgres may be down after a failed scenario
                pass


SKIP = 77   # CTest SKIP_RETURN_CODE


def full_requested():
    """The heavy versions are registered in CTest with label chaos-full; they only run when
    asked for: EPP_TEST_FULL=1, or a ctest parent process whose command line selects the
    chaos-full label (`make chaos` = ctest -L chaos-full)."""
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


# Scenarios live in scenarios.py and scenarios_kafka.py; imported here so that `harness.py` is
# the one entry point.
def main(argv=None):
    import scenarios
    import scenarios_kafka  # noqa: F401 - registers the real-Kafka scenarios
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--full", action="store_true", default=FULL,
                    help="heavy versions (longer, more faults); also EPP_TEST_FULL=1")
    ap.add_argument("--kafka", choices=("cluster", "fixture", "dev"), default="cluster",
                    help="where scenarios that fault no broker run: the private 3-node cluster "
                    "(default), the CTest fixture's node, or a private dev broker each")
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
        return check.markdown_table(a.table)
    if a.list:
        for g, names in sorted(scenarios.GROUPS.items()):
            print("%s: %s" % (g, " ".join("%s(%s)" % (n, scenarios.ALL[n].need)
                                          for n in names)))
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
    ctx = Context(base_env, pg, a.full, a.kafka)
    results = []
    try:
        for n in names:
            fn = scenarios.ALL[n]
            t0 = time.monotonic()
            log("scenario %s (%s) ..." % (n, "full" if a.full else "short"))
            try:
                r = fn(ctx)
            except Exception as e:  # noqa: BLE001 - a scenario that blew up is a failed one
                traceback.print_exc()
                r = {"scenario": n, "requests": 0, "ok": 0, "failed": 0, "unknown": 0,
                     "lost": 0, "phantom": 0, "duplicated": 0, "passed": False,
                     "problems": ["scenario raised: %r" % e], "notes": []}
            r["seconds"] = round(time.monotonic() - t0, 1)
            r["mode"] = "full" if a.full else "short"
            r["kafka"] = fn.need if fn.need != "any" else a.kafka
            results.append(r)
            if len(results) == 1:
                print(check.HEADER)
            print(check.format_line(r), flush=True)
            if "rows" in r:
                print(check.format_details(r), flush=True)
            else:
                for p in r["problems"]:
                    print("#   PROBLEM: " + p)
            if a.results:
                with open(a.results, "a") as f:
                    f.write(json.dumps(r) + "\n")
            if not pg.is_up():   # a scenario that left Postgres down must not fail the next
                pg.start()
    finally:
        if ctx._cluster is not None:
            log("the 3-node cluster took %.1fs to start" % ctx._cluster.start_s)
        ctx.close()
        pg.destroy()
    print()
    print(check.HEADER)
    for r in results:
        print(check.format_line(r))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
