"""The real-Kafka process faults. Each runs on the harness's private 3-node Apache Kafka cluster
(brokers.Cluster: KRaft, replication factor 3, min.insync.replicas=2), with epp-ingest's
idempotent producer at acks=all and librdkafka's default of 5 requests in flight (no
one-in-flight workaround: that was for the mock, see scenarios.MOCK_INFLIGHT). The faults are
real: SIGKILL, SIGSTOP/SIGCONT and SIGTERM of broker processes. Every scenario proves its fault
happened (leaderships moved, 503s seen, the other consumer took over, ...) and leaves the three
nodes running with every replica in sync, so the next scenario starts healthy.

Timing on Apache Kafka's defaults: a killed node is fenced by the controller after
broker.session.timeout.ms (9 s); until then it stays in every partition's in-sync set, so
acks=all writes wait (and ingest answers 503 after KAFKA_DELIVERY_TIMEOUT_MS, 5 s here). Once it
is fenced, two in-sync replicas remain and writes go on.
"""
import os
import random
import signal
import subprocess
import time

import epp_testlib as t
from brokers import NODES, die_with_parent
from check import MIN_ACKS
from scenarios import harness, reps, run, scenario, wait_takeover


def require_acks(h, t0, what, timeout=30.0):
    """Proof that writes go on: waits (while the caller keeps the fault in place) for a first
    acknowledgement of an event sent after t0."""
    try:
        t.wait_for(lambda: h.o.acks(t0) > 0, timeout, interval=0.2, msg="a 202")
        h.note("events sent %s acknowledged %.1fs after the mark" %
               (what, h.o.first_ack(t0) - t0))
    except t.TestFailure:
        h.problem("no event sent %s was acknowledged within %.0fs" % (what, timeout))


def leaders_moved(h, k, what):
    """Proof that the controller took node k's leaderships away (it fences a dead or frozen
    node after broker.session.timeout.ms)."""
    try:
        h.note("%s: its leaderships moved to other nodes after %.1fs" %
               (what, h.kafka.wait_leaders_off(h.topic, k)))
    except t.TestFailure as e:
        h.problem("%s: it kept its leaderships: %s" % (what, e))


def leader_rounds(h, n, what, fault):
    """Under load, n times: picks the node leading the most partitions of the topic and runs
    fault(k) on it in a fault window."""
    h.load()
    h.wait_acks()
    for _ in range(n):
        time.sleep(4)
        k = h.kafka.busiest_leader(h.topic)
        led = sorted(p for p, ld in h.kafka.leaders(h.topic).items() if ld == k)
        with h.fault("%s node %d, leader of partitions %s" % (what, k, led)):
            fault(k)
    h.wait_acks()


def back_in_sync(h, k, after):
    h.note("node %d back in every in-sync set %.1fs after %s" %
           (k, h.kafka.wait_isr_full(h.topic), after))


def refused_window(h, t0, t1, what):
    """With the in-sync minimum out of reach, every write must be refused with 503, never
    acknowledged: no event sent after t0 may be 202ed by t1, and 503s must be seen."""
    acked = h.o.acks(t0, t1)
    st = h.o.statuses_answered(t0, t1)
    h.note("%s: answers %s, %d acknowledgements" % (what, st, acked))
    if acked:
        h.problem("%d events sent %s were acknowledged (202): the in-sync minimum cannot be "
                  "met, so each must get 503" % (acked, what))
    if not st.get(503):
        h.problem("no 503 answered %s: the outage did not reach ingest" % what)


@scenario("cluster")
def leader_kill(ctx):
    """SIGKILL of the node leading the most partitions of the topic, under load (1x; full 2x),
    restarted once the others took over. Proof: its leaderships move to other nodes, and events
    sent while it is down are acknowledged (two in-sync replicas remain)."""
    def kill(h, k):
        h.kafka.kill(h, k)
        leaders_moved(h, k, "killed node %d" % k)
        require_acks(h, time.time(), "with node %d down" % k)
        h.kafka.start_node(h, k)
        back_in_sync(h, k, "its restart")
    return run(harness(ctx, "leader_kill", "cluster"),
               lambda h: leader_rounds(h, reps(ctx.full, 1, 2), "SIGKILL", lambda k: kill(h, k)))


@scenario("cluster")
def broker_sigstop(ctx):
    """SIGSTOP of the busiest leader for 15 s (full: 25 s), past broker.session.timeout.ms (9 s)
    and the producer's request timeout (4 s), then SIGCONT. Proof: the controller fences the
    frozen node and moves its leaderships while it is stopped; after SIGCONT it rejoins every
    in-sync set. A frozen leader that wakes up believing it still leads must not turn into a
    lost or doubled event."""
    def freeze(h, k):
        h.kafka.freeze(h, k)
        t0 = time.monotonic()
        leaders_moved(h, k, "frozen node %d" % k)
        time.sleep(max(2.0, reps(ctx.full, 15, 25) - (time.monotonic() - t0)))
        h.kafka.thaw(h, k)
        back_in_sync(h, k, "SIGCONT")
    return run(harness(ctx, "broker_sigstop", "cluster"),
               lambda h: leader_rounds(h, reps(ctx.full, 1, 2), "SIGSTOP", lambda k: freeze(h, k)))


@scenario("cluster")
def rolling_restart(ctx):
    """A rolling restart of all three nodes: each in turn stopped cleanly
    (SIGTERM: controlled shutdown moves its leaderships first), started again, and the next one
    only once every replica is back in sync, as an operator does. Proof: each node comes back
    as a new process, and events sent while each is down are acknowledged."""
    def body(h):
        kc = h.kafka
        h.load()
        h.wait_acks()
        for k in NODES:
            time.sleep(3)
            old = kc.pid(k)
            with h.fault("rolling restart: node %d" % k):
                kc.stop_node(h, k)
                require_acks(h, time.time(), "with node %d stopped" % k)
                kc.start_node(h, k)
                back_in_sync(h, k, "its restart")
            new = kc.pid(k)
            if new is None or new == old:
                h.problem("node %d was not restarted (pid %s -> %s)" % (k, old, new))
        h.wait_acks()
    return run(harness(ctx, "rolling_restart", "cluster"), body)


@scenario("cluster")
def two_down(ctx):
    """Two of the three nodes SIGKILLed together for 12 s (full: twice, 20 s): the in-sync
    minimum (2) cannot be met, and the controller quorum is gone, so every write must get 503,
    never a 202. Then both start again; writes resume."""
    def body(h):
        kc = h.kafka
        h.load()
        h.wait_acks()
        for i in range(reps(ctx.full, 1, 2)):
            time.sleep(4)
            a, b = sorted(random.sample(NODES, 2))
            with h.fault("SIGKILL nodes %d and %d" % (a, b)):
                kc.kill(h, a)
                kc.kill(h, b)
                t_down = time.time()
                time.sleep(reps(ctx.full, 12, 20))
                refused_window(h, t_down, time.time(), "with nodes %d and %d down" % (a, b))
                kc.start_down(h, [a, b])
                kc.wait_isr_full(h.topic)
            require_acks(h, time.time(), "after nodes %d and %d came back" % (a, b))
        h.wait_acks()
    return run(harness(ctx, "two_down", "cluster"), body)


@scenario("cluster")
def broker_down(ctx):
    """The whole cluster down: all three nodes SIGKILLed for 10 s (full: twice, 15 s), longer
    than the 5 s delivery timeout, then started. Proof: 503s are seen while it is down, and no
    202 for an event sent then; requests never hang past the delivery timeout; 202s resume
    within 20 s of the cluster serving again, without restarting any epp service."""
    def body(h):
        kc = h.kafka
        h.load()
        h.wait_acks()
        for i in range(reps(ctx.full, 1, 2)):
            time.sleep(4)
            with h.fault("all three nodes SIGKILLed (%d)" % (i + 1)):
                for k in NODES:
                    kc.kill(h, k)
                t_down = time.time()
                time.sleep(reps(ctx.full, 10, 15))
                refused_window(h, t_down, time.time(), "with the whole cluster down")
                kc.start_down(h, list(NODES))
                kc.wait_isr_full(h.topic)
            require_acks(h, time.time(), "after the cluster was back (outage %d)" % (i + 1),
                         timeout=20)
        h.wait_acks()
        if h.o.max_latency > 5.0 + 4.0:
            h.problem("a request took %.1fs with a 5 s delivery timeout (a hang?)" %
                      h.o.max_latency)
    return run(harness(ctx, "broker_down", "cluster"), body)


@scenario("cluster")
def consumer_failover(ctx):
    """Two consumers in one group; the node coordinating the group is SIGKILLed and, one second
    later -- while the group's coordinator and the partition leaders fail over -- one consumer
    is SIGKILLed and not restarted. Proof: the coordinator moves to another node, and the
    survivor's log records every partition's assignment, each storing progress after the
    session timeout."""
    def body(h):
        kc = h.kafka
        h.load()
        h.wait_acks()
        time.sleep(reps(ctx.full, 5, 10))
        co = kc.coordinator(h.group)
        with h.fault("SIGKILL node %d (the group coordinator), then consumer1" % co):
            kc.kill(h, co)
            time.sleep(1.0)
            pos = len(h.consumers[0].log_text())
            h.consumers[1].kill()
            since = time.time() + h.session_timeout_s
            took = wait_takeover(h, h.consumers[0], pos, since, 90,
                                 "the surviving consumer taking every partition during the "
                                 "broker failover")
            if took is not None:
                h.note("every partition stored progress %.1fs after the session timeout" % took)
            now = kc.coordinator(h.group)
            if now in (co, -1):
                h.problem("the group's coordinator did not move off node %d (now %s)" %
                          (co, now))
            else:
                h.note("group coordinator moved from node %d to node %d" % (co, now))
            kc.start_node(h, co)
            kc.wait_isr_full(h.topic)
        h.wait_acks()
    return run(harness(ctx, "consumer_failover", "cluster", consumers=2), body)


@scenario("cluster")
def retention_gap(ctx):
    """A 1-partition topic with retention.ms=3000 and segment.ms=500 (the cluster checks
    retention every second). The consumer is stopped (SIGTERM) while events keep coming, until
    the retention has deleted messages it never read. On restart it must report the gap loudly
    -- an 'OFFSET OUT OF RANGE' log line and epp_consumer_offset_reset_errors_total > 0
    (auto.offset.reset=error) -- and stall on that partition: no row after the restart. The
    missing events count as expired when the accounting is exact (check.split_expired);
    anything else missing is lost."""
    def body(h):
        h.expect_gap = True
        h.load(rps=60)
        time.sleep(3)
        h.stop_load()
        before = h.wait_drained(len(h.o.ids("ok")), timeout=30)
        with h.fault("consumer stopped while the retention deletes unread messages"):
            rc = h.consumer.terminate()
            if rc != 0:
                h.problem("epp-consumer exited %s on SIGTERM" % rc)
            conn = t.pg_connect(h.db_url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT coalesce(max(next_offset), 0) FROM "
                                "public.epp_consumer_offsets WHERE topic = %s", (h.topic,))
                    stored = cur.fetchone()[0]
            finally:
                conn.close()
            h.load(rps=60)
            try:
                t.wait_for(lambda: t.topic_offsets(h.kenv, h.topic)[0][0] > stored, 60,
                           interval=0.5, msg="the retention deleting past offset %d" % stored)
            except t.TestFailure as e:
                h.problem("no gap: %s" % e)
            time.sleep(1)
            h.stop_load()
            h.note("stored offset %d; after the retention: watermarks %s; rows before %d" %
                   (stored, t.topic_offsets(h.kenv, h.topic), before))
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
        # Acknowledgements after the fault: they wait behind the gap with the rest.
        h.load(rps=60)
        time.sleep(3)
        after = h.count_rows()
        h.note("rows after restart %d (before %d): %s" %
               (after, before, "partition stalled at the gap (not skipped)" if after == before
                else "%d rows inserted after the gap was reported" % (after - before)))
        if after != before:
            h.problem("the consumer went past the gap (%d new rows) instead of stalling" %
                      (after - before))
    return run(harness(ctx, "retention_gap", "cluster", partitions=1,
                       topic_config={"retention.ms": "3000", "segment.ms": "500"}), body)


def _read_record(path):
    """epp-load --record: one "event_id status" line per event; {event_id: status}."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


@scenario("cluster")
def node_kill_load(ctx):
    """Issue 13's acceptance point: build/bin/epp-load sends single events at 300/s, each with
    its own event_id and its answer recorded (--record), while a node is SIGKILLed: one chosen
    at random, left down for the rest of the scenario once the others took over (full: each of
    the three in turn, each restarted before the next). No event epp-load got a 202 for is
    missing from public.events, and none is stored twice. The harness's own load runs beside it
    at a low rate (its events carry the resend and fault-window rules; epp-load's events without
    a 202 are not resent, and may be stored at most once)."""
    def body(h):
        kc = h.kafka
        rec = os.path.join(h.base_env["EPP_BUILD_DIR"], "chaos", h.name + "-epp-load.txt")
        cmd = [t.bin_path(h.base_env, "epp-load"), "--url", h.ingest.url("/events"),
               "--rps", "300", "--duration", "15m", "--connections", "16", "--record", rec,
               "--timeout", "15", "--users", "300", "--json"]
        load = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        h.load(rps=40)
        h.wait_acks(100)
        nodes = list(NODES) if ctx.full else [random.choice(NODES)]
        try:
            for k in nodes:
                time.sleep(4)
                with h.fault("SIGKILL node %d under epp-load" % k):
                    kc.kill(h, k)
                    leaders_moved(h, k, "killed node %d" % k)
                    if ctx.full:
                        kc.start_node(h, k)
                        back_in_sync(h, k, "its restart")
            h.wait_acks()
            time.sleep(4)
        finally:
            load.send_signal(signal.SIGINT)
            out, err = load.communicate(timeout=60)
        got = _read_record(rec)
        acked = {e for e, st in got.items() if st == "202"}
        others = {}
        for st in got.values():
            if st != "202":
                others[st] = others.get(st, 0) + 1
        h.external = {"name": "epp-load", "sent": set(got), "acked": acked}
        h.note("epp-load (exit %s): %d events, %d answered 202, others %s; report: %s" %
               (load.returncode, len(got), len(acked), others, out.strip()[-300:]))
        # UUIDv7 event_ids carry the millisecond epp-load made them: 202s for events made
        # before the first kill and after the last show that the load ran across the faults.
        first_start = h.faults[0][0] if h.faults else 0
        last_end = h.faults[-1][1] if h.faults else 0
        before = sum(1 for e in acked if _uuid7_time(e) < first_start)
        after = sum(1 for e in acked if _uuid7_time(e) > last_end)
        h.note("epp-load: %d 202s for events made before the first kill, %d after the last" %
               (before, after))
        if before < MIN_ACKS or after < MIN_ACKS:
            h.problem("epp-load got %d 202s before the first kill and %d after the last (want "
                      "at least %d each; stderr: %s)" % (before, after, MIN_ACKS,
                                                          err.strip()[-300:]))
    return run(harness(ctx, "node_kill_load", "cluster"), body)


def _uuid7_time(eid):
    """The Unix time (s) in a UUIDv7's first 48 bits."""
    return int(eid.replace("-", "")[:12], 16) / 1000.0
