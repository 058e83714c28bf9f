"""The chaos scenarios. Each is a function (base_env, pg, full) -> result dict (harness.finish()).

Every scenario is bounded in time: the short version (CTest label `integration`) runs ~15-25 s of
traffic, the full one (label `chaos-full`, `make chaos`) about three times more with more faults.
What each proves is written in docs/reliability.md.
"""
import http.client
import json
import os
import random
import signal
import threading
import time

import epp_testlib as t
import harness as H


def run(h, body):
    try:
        h.start()
        body(h)
        return h.finish()
    finally:
        h.stop()


def reps(full, short_n, full_n):
    return full_n if full else short_n


# ---------------------------------------------------------------------------------------------
# Ingestion
# ---------------------------------------------------------------------------------------------

def ingest_sigkill(env, pg, full):
    """SIGKILL epp-ingest under load and restart it: every 202 given before the kill is stored;
    requests in flight at the kill are unknown (and resent)."""
    def body(h):
        h.load()
        for _ in range(reps(full, 2, 6)):
            time.sleep(random.uniform(2.0, 4.0))
            h.ingest.kill()
            time.sleep(0.3)
            h.ingest.start()
        time.sleep(2)
    return run(H.Harness(env, pg, "ingest_sigkill", full), body)


def ingest_sigterm(env, pg, full):
    """SIGTERM epp-ingest under load: it answers everything in flight truthfully, exits 0, and
    every 202 is stored; then it is restarted."""
    def body(h):
        h.load()
        for i in range(reps(full, 2, 6)):
            time.sleep(random.uniform(2.0, 4.0))
            t0 = time.monotonic()
            rc = h.ingest.terminate(timeout=30)
            h.note("SIGTERM %d: exit %s after %.2fs" % (i + 1, rc, time.monotonic() - t0))
            if rc != 0:
                h.problem("epp-ingest exited %s on SIGTERM (want 0)" % rc)
            h.ingest.start()
        time.sleep(2)
    return run(H.Harness(env, pg, "ingest_sigterm", full), body)


def fatal_error(env, pg, full):
    """A fatal producer error (POST /debug/fatal, EPP_TEST_FAULTS=1): the affected requests get
    503, the producer is recreated, the service keeps serving, and no 202 is lost."""
    def body(h):
        h.load()
        for i in range(reps(full, 3, 10)):
            time.sleep(random.uniform(2.0, 3.5))
            st, _, b = t.http_request("POST", h.ingest.url("/debug/fatal"), body=b"", timeout=10)
            if st != 200:
                h.problem("POST /debug/fatal: %s %r" % (st, b[:200]))
        time.sleep(3)
        # The service still serves after the last fault.
        ok_before = len(h.o.ids("ok"))
        time.sleep(2)
        if len(h.o.ids("ok")) <= ok_before:
            h.problem("no 202 in the 2 s after the last fatal error: the producer did not recover")
    return run(H.Harness(env, pg, "fatal_error", full,
                         ingest_env={"EPP_TEST_FAULTS": "true"}), body)


def lost_ack(env, pg, full):
    """A lost produce ack: the broker's Produce responses are delayed (error_rtts NO_ERROR:3000:
    the mock appends the messages, then waits), and the connection is cut while they wait
    (brokers down, up 0.3 s later). The producer never saw the ack and resends the same batch,
    which the mock stores a second time (it detects duplicate sequences only for transactional
    producers). The topic then holds duplicates; Postgres must hold each event once and the
    rollups must count it once."""
    def body(h):
        h.load()
        for _ in range(reps(full, 3, 10)):
            time.sleep(2.0)
            st, b = t.broker_control(h.kenv, "POST", "/brokers/1/error_rtts?api=Produce"
                                     "&errors=NO_ERROR:3000,NO_ERROR:3000,NO_ERROR:3000")
            if st != 200:
                h.problem("error_rtts: %s %r" % (st, b))
            time.sleep(0.6)
            t.broker_control(h.kenv, "POST", "/brokers/down")
            time.sleep(0.3)
            t.broker_control(h.kenv, "POST", "/brokers/up")
        time.sleep(4)
    h = H.Harness(env, pg, "lost_ack", full, brokers=1,
                  ingest_env={"KAFKA_DELIVERY_TIMEOUT_MS": "15000"})
    r = run(h, body)
    r["notes"].append("topic duplicates from resent produces: %d (expected > 0; rows unique)" %
                      r.get("topic_dups", 0))
    return r


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------

def broker_down(env, pg, full):
    """Every broker down for longer than the delivery timeout (3 s), then up: requests get 503
    within the timeout (never a hang, never a 202 for a lost event), and succeed again after."""
    def body(h):
        h.load()
        for i in range(reps(full, 1, 3)):
            time.sleep(3)
            st, b = t.broker_control(h.kenv, "POST", "/brokers/down")
            if st != 200:
                h.problem("brokers/down: %s %r" % (st, b))
            time.sleep(7)
            t.broker_control(h.kenv, "POST", "/brokers/up")
            n_ok = len(h.o.ids("ok"))
            time.sleep(5)
            if len(h.o.ids("ok")) <= n_ok:
                h.problem("no 202 within 5 s after the brokers came back (outage %d)" % (i + 1))
        if h.o.max_latency > 3.0 + 4.0:
            h.problem("a request took %.1fs with a 3 s delivery timeout (hang?)" %
                      h.o.max_latency)
    return run(H.Harness(env, pg, "broker_down", full,
                         ingest_env={"KAFKA_DELIVERY_TIMEOUT_MS": "3000"}), body)


def leader_change(env, pg, full):
    """Partition leaders move between 3 brokers every ~1.5 s under load."""
    def body(h):
        h.load()
        for _ in range(reps(full, 7, 30)):
            time.sleep(1.5)
            for p in range(h.partitions):
                st, b = t.broker_control(h.kenv, "POST", "/topics/events/partitions/%d/leader"
                                         "?broker=%d" % (p, random.randint(1, 3)))
                if st != 200:
                    h.problem("leader move: %s %r" % (st, b))
        time.sleep(3)
    # One request in flight, for the same dev broker artefact as retriable_errors: a batch
    # refused by the old leader (NOT_LEADER_FOR_PARTITION) is "implicitly acked" by librdkafka
    # when a later batch succeeds on the new leader, and the mock never appended it (seen once
    # per ~100,000 events with 5 in flight; librdkafka's debug=eos log then says "1 message(s)
    # implicitly acked by subsequent batch success").
    inflight = os.environ.get("EPP_CHAOS_INFLIGHT", "1")
    return run(H.Harness(env, pg, "leader_change", full, brokers=3,
                         ingest_env={"KAFKA_PRODUCER_CONFIG":
                                     "max.in.flight.requests.per.connection=" + inflight}),
               body)


def retriable_errors(env, pg, full):
    """NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS injected into Produce:
    they cost latency only — every valid event is 202'd on its first try."""
    def body(h):
        h.load(timeout=30)     # the client waits longer than the 20 s delivery timeout
        for _ in range(reps(full, 5, 20)):
            time.sleep(2)
            st, b = t.broker_control(h.kenv, "POST", "/errors?api=Produce&count=20&codes="
                                     "NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT,"
                                     "NOT_ENOUGH_REPLICAS")
            if st != 200:
                h.problem("inject: %s %r" % (st, b))
        time.sleep(3)
        if h.o.first["unknown"]:
            h.problem("%d events got no 202 despite only retriable errors (statuses %s)" %
                      (h.o.first["unknown"], h.o.statuses))
    # One request in flight per connection (also in leader_change): the mock broker does not
    # check produce sequence numbers (only for transactional producers), so with 5 in flight a
    # batch that got an
    # injected error is implicitly acked by librdkafka when the NEXT batch succeeds (a real broker
    # would have refused that next batch with OUT_OF_ORDER_SEQUENCE_NUMBER), and the first batch
    # is never appended: acked messages missing from the topic. Reproduced with confluent_kafka
    # alone (no epp code): see docs/reliability.md, "Dev broker artefacts".
    # EPP_CHAOS_INFLIGHT=5 runs it with librdkafka's default to show the artefact.
    inflight = os.environ.get("EPP_CHAOS_INFLIGHT", "1")
    return run(H.Harness(env, pg, "retriable_errors", full, brokers=3,
                         ingest_env={"KAFKA_DELIVERY_TIMEOUT_MS": "20000",
                                     "KAFKA_PRODUCER_CONFIG":
                                     "max.in.flight.requests.per.connection=" + inflight}),
               body)


# ---------------------------------------------------------------------------------------------
# Consumer
# ---------------------------------------------------------------------------------------------

def consumer_sigkill(env, pg, full):
    """SIGKILL epp-consumer at random moments and restart it: rows exactly once, rollups exact."""
    def body(h):
        h.load()
        for _ in range(reps(full, 3, 10)):
            time.sleep(random.uniform(0.5, 4.0))
            h.consumer.kill()
            h.consumer.start()
        time.sleep(2)
    return run(H.Harness(env, pg, "consumer_sigkill", full), body)


def consumer_sigstop(env, pg, full):
    """Two consumers; one frozen with SIGSTOP past the session timeout (4 s) while the other takes
    over, then resumed: its late batch duplicates nothing and moves no offset backwards."""
    def body(h):
        h.load()
        for _ in range(reps(full, 1, 3)):
            time.sleep(3)
            h.consumers[0].signal(signal.SIGSTOP)
            time.sleep(8)
            h.consumers[0].signal(signal.SIGCONT)
            time.sleep(3)
        h.consumers[0].killed_on_purpose = False   # it must survive this
    return run(H.Harness(env, pg, "consumer_sigstop", full, consumers=2), body)


def two_consumers_kill(env, pg, full):
    """Two consumers share the partitions; one is SIGKILLed and not restarted: the other takes
    its partitions (after the session timeout) with no loss and no duplicate."""
    def body(h):
        h.load()
        time.sleep(reps(full, 4, 15))
        h.consumers[1].kill()
        time.sleep(reps(full, 9, 30))
    return run(H.Harness(env, pg, "two_consumers_kill", full, consumers=2), body)


def retention_gap(env, pg, full):
    """The consumer is stopped while > 5 MiB goes to a 1-partition topic, so the dev broker's
    retention drops unread messages. On restart the consumer must report the gap loudly
    (auto.offset.reset=error: log line + epp_consumer_offset_reset_errors_total) and must not skip
    it silently. The missing rows are counted as `expired`, not lost, when they are exactly the
    broker's doing (Harness.split_expired): gone from the topic below the low watermark, or
    waiting behind the gap in the stalled partition."""
    def body(h):
        h.expect_gap = True
        h.load(rps=60)
        time.sleep(3)
        h.stop_load()
        before = h.wait_drained(len(h.o.ids("ok")), timeout=30)
        rc = h.consumer.terminate()
        if rc != 0:
            h.problem("epp-consumer exited %s on SIGTERM" % rc)
        # ~14 MiB of 1 KiB events in 500-event batches.
        conn = None
        for _ in range(reps(full, 28, 60)):
            evs = [H.make_event(True, pad=1000) for _ in range(500)]
            with h.o.lock:
                for ev in evs:
                    h.o.events[ev["event_id"]] = ev
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", h.ingest.port, timeout=30)
            conn = H.send_events(h.o, conn, evs, True)
        lows = t.topic_offsets(h.kenv, h.topic)
        h.note("after the flood: watermarks %s; rows before %d" % (lows, before))
        h.consumer.start()

        def reported():
            v = h.consumer.metric("epp_consumer_offset_reset_errors_total")
            return v is not None and v > 0
        try:
            t.wait_for(reported, 30, msg="epp_consumer_offset_reset_errors_total > 0")
        except t.TestFailure as e:
            h.problem("the gap was not reported by the metric: %s" % e)
        if "OFFSET OUT OF RANGE" not in h.consumer.log_text():
            h.problem("no 'OFFSET OUT OF RANGE' error in the consumer's log")
        time.sleep(3)
        after = h.count_rows()
        h.note("rows after restart %d (before %d): %s" %
               (after, before, "partition stalled at the gap (not skipped)" if after == before
                else "%d rows inserted after the gap was reported" % (after - before)))
        if after != before:
            h.problem("the consumer went past the gap (%d new rows) instead of stalling" %
                      (after - before))
    h = H.Harness(env, pg, "retention_gap", full, partitions=1)
    return run(h, body)


# ---------------------------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------------------------

def _pg_restart(h, pg, mode, cycles, down_s=3.0):
    for i in range(cycles):
        time.sleep(3)
        t0 = time.monotonic()
        rc = pg.stop(mode)
        if rc != 0:
            h.problem("pg_ctl stop -m %s: rc %s" % (mode, rc))
        time.sleep(down_s)
        pg.start()
        h.note("postgres %s stop + start %d: %.1fs" % (mode, i + 1, time.monotonic() - t0))
    time.sleep(4)


def pg_fast(env, pg, full):
    """Postgres stop -m fast (3 s down) and start, under load: the consumer reconnects by itself,
    nothing lost, nothing twice."""
    def body(h):
        h.load()
        _pg_restart(h, pg, "fast", reps(full, 1, 4))
    return run(H.Harness(env, pg, "pg_fast", full), body)


def pg_immediate(env, pg, full):
    """Postgres stop -m immediate (a crash, recovery on start), under load."""
    def body(h):
        h.load()
        _pg_restart(h, pg, "immediate", reps(full, 1, 4))
    return run(H.Harness(env, pg, "pg_immediate", full), body)


def slow_db(env, pg, full):
    """A transaction holds ACCESS EXCLUSIVE on public.events for 10 s (pg_sleep): the consumer
    waits, then catches up; nothing lost, nothing twice."""
    def body(h):
        h.load()
        for _ in range(reps(full, 1, 3)):
            time.sleep(3)
            conn = t.pg_connect(h.db_url, autocommit=False)
            try:
                with conn.cursor() as cur:
                    cur.execute("LOCK TABLE public.events IN ACCESS EXCLUSIVE MODE")
                    cur.execute("SELECT pg_sleep(10)")
                conn.commit()
            finally:
                conn.close()
        time.sleep(3)
    return run(H.Harness(env, pg, "slow_db", full), body)


class AnalyticsProbe:
    """Hammers the analytics routes; every answer must be 200 or 503 with a JSON body."""
    PATHS = ["/analytics/events/count?from_ts=0&to_ts=4102444800",
             "/analytics/events/timeseries?from_ts=%d&to_ts=%d&interval=hour",
             "/analytics/events/top?from_ts=0&to_ts=4102444800&limit=5",
             "/analytics/users/active?from_ts=0&to_ts=4102444800",
             "/analytics/users/u1/events?limit=5",
             "/ready"]

    def __init__(self, svc):
        self.svc = svc
        self.statuses = {}
        self.bad = []
        self.stop_ev = threading.Event()
        self.last_200 = 0.0
        self.th = threading.Thread(target=self.run, daemon=True)

    def run(self):
        now = int(time.time())
        while not self.stop_ev.is_set():
            path = random.choice(self.PATHS)
            if "%d" in path:
                path = path % (now - 86400, now)
            try:
                st, _, body = t.http_request("GET", self.svc.url(path), timeout=15)
                self.statuses[st] = self.statuses.get(st, 0) + 1
                ok_json = True
                try:
                    json.loads(body)
                except ValueError:
                    ok_json = False
                if st not in (200, 503) or not ok_json:
                    self.bad.append("%s -> %s %r" % (path, st, body[:120]))
                elif st == 200:
                    self.last_200 = time.monotonic()
            except Exception as e:  # noqa: BLE001
                self.statuses[type(e).__name__] = self.statuses.get(type(e).__name__, 0) + 1
                self.bad.append("%s -> %r" % (path, e))
            time.sleep(0.02)


def analytics_db_restart(env, pg, full):
    """epp-analytics under load while Postgres restarts (immediate): only 200 or 503 JSON, never
    a crash, and 200 again within 15 s of the database being back."""
    def body(h):
        probe = AnalyticsProbe(h.analytics)
        probe.th.start()
        h.load(rps=100)
        try:
            for i in range(reps(full, 1, 3)):
                time.sleep(3)
                pg.stop("immediate")
                time.sleep(3)
                pg.start()
                back = time.monotonic()
                try:
                    t.wait_for(lambda: probe.last_200 > back, 15,
                               msg="a 200 from epp-analytics after the restart")
                    h.note("restart %d: analytics answered 200 %.1fs after Postgres was back" %
                           (i + 1, probe.last_200 - back))
                except t.TestFailure as e:
                    h.problem(str(e))
            time.sleep(2)
        finally:
            probe.stop_ev.set()
            probe.th.join(20)
        h.note("analytics statuses: %s" % probe.statuses)
        if probe.bad:
            h.problem("%d analytics answers not 200/503 JSON, first: %s" %
                      (len(probe.bad), probe.bad[:3]))
        if not h.analytics.alive():
            h.problem("epp-analytics died")
    return run(H.Harness(env, pg, "analytics_db_restart", full), body)


ALL = {
    "ingest_sigkill": ingest_sigkill,
    "ingest_sigterm": ingest_sigterm,
    "fatal_error": fatal_error,
    "lost_ack": lost_ack,
    "broker_down": broker_down,
    "leader_change": leader_change,
    "retriable_errors": retriable_errors,
    "consumer_sigkill": consumer_sigkill,
    "consumer_sigstop": consumer_sigstop,
    "two_consumers_kill": two_consumers_kill,
    "retention_gap": retention_gap,
    "pg_fast": pg_fast,
    "pg_immediate": pg_immediate,
    "slow_db": slow_db,
    "analytics_db_restart": analytics_db_restart,
}

GROUPS = {
    "ingest": ["ingest_sigkill", "ingest_sigterm", "fatal_error", "lost_ack"],
    "kafka": ["broker_down", "leader_change", "retriable_errors"],
    "consumer": ["consumer_sigkill", "consumer_sigstop", "two_consumers_kill", "retention_gap"],
    "postgres": ["pg_fast", "pg_immediate", "slow_db", "analytics_db_restart"],
}
