"""Helpers shared by the consumer's integration tests (tests/consumer/test_*.py)."""

import datetime
import json
import os
import random
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import epp_rollups  # noqa: E402
import epp_testlib as t  # noqa: E402

FULL = os.environ.get("EPP_TEST_FULL") == "1"
BASE_TS = datetime.datetime(2026, 11, 27, 8, 0, 0, tzinfo=datetime.timezone.utc)


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def canonical(event_id, user_id, event_name, ts, metadata=None, received_at=None):
    """The canonical Kafka message value (common/epp_event.h), as bytes."""
    md = "{}" if metadata is None else metadata
    if not isinstance(md, str):
        md = json.dumps(md, separators=(",", ":"))
    return ('{"event_id":%s,"user_id":%s,"event_name":%s,"timestamp":"%s","received_at":"%s",'
            '"metadata":%s}' % (json.dumps(str(event_id)), json.dumps(user_id),
                                json.dumps(event_name), rfc3339(ts),
                                rfc3339(received_at or ts), md)).encode()


def make_events(n, seed=1, users=500, names=("page_view", "click", "signup", "purchase", "login"),
                span_s=3 * 86400):
    """n canonical messages as (key, value) tuples, spread over span_s seconds from BASE_TS so
    that every rollup table gets several buckets. Deterministic for a seed."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        eid = uuid.UUID(int=rnd.getrandbits(128), version=4)
        user = "user-%d" % rnd.randrange(users)
        name = rnd.choice(names)
        ts = BASE_TS + datetime.timedelta(microseconds=rnd.randrange(span_s * 1000000) // 1000 * 1000)
        md = '{"i":%d,"big":12345678901234567890,"f":0.1,"s":"tab\\there \\\\ \\"q\\""}' % i
        out.append((user.encode(), canonical(eid, user, name, ts, md)))
    return out


def event_id_of(value):
    return json.loads(value)["event_id"]


def consumer(env, db_url, topic, group=None, port=None, extra_env=None, log_name=None):
    """An epp-consumer ServiceProcess (not started)."""
    e = {"DATABASE_URL": db_url, "KAFKA_TOPIC": topic,
         "KAFKA_GROUP_ID": group or "g_" + topic, "KAFKA_DLQ_TOPIC": topic + ".dlq",
         "LOG_LEVEL": "info"}
    e.update(extra_env or {})
    return t.ServiceProcess(env, "epp-consumer", port=port or t.free_port(), extra_env=e,
                            log_name=log_name)


def pg_value(url, sql, params=()):
    """The first column of the first row of a query."""
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def count_rows(url):
    try:
        return pg_value(url, "SELECT count(*) FROM public.events")
    except Exception:  # noqa: BLE001 - the table may not exist yet, or the server restarts
        return -1


def wait_rows(url, n, timeout=60.0, procs=()):
    """Waits until public.events holds n rows; fails early if one of procs died. A timeout says
    how many rows there were and what each of procs logged above info level (a stall on a
    slow machine and a writer retrying the same failure look alike from here)."""
    def done():
        for p in procs:
            if p.proc is not None and not p.alive():
                raise t.TestFailure("%s died (%s):\n%s" % (p.program, p.proc.returncode,
                                                           p.log_tail()))
        return count_rows(url) >= n
    try:
        t.wait_for(done, timeout=timeout, interval=0.2, msg="%d rows" % n)
    except t.TestFailure as e:
        logs = []
        for p in procs:
            lines = [ln for ln in p.log_text().splitlines()
                     if '"level":"info"' not in ln and '"level":"debug"' not in ln]
            logs.append("%s (%s), its last warnings and errors:\n%s" %
                        (p.program, p.log_path, "\n".join(lines[-15:]) or "(none)"))
        raise t.TestFailure("%s; public.events holds %d rows\n%s" %
                            (e, count_rows(url), "\n".join(logs))) from None


def check_exact(url, expected_ids):
    """public.events holds exactly expected_ids (a set of str), once each, and the rollups equal
    GROUP BY over it."""
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT event_id) FROM public.events")
            total, distinct = cur.fetchone()
            t.check(total == distinct, "duplicate rows: %d rows, %d distinct" % (total, distinct))
            cur.execute("SELECT event_id::text FROM public.events")
            got = {r[0] for r in cur.fetchall()}
        missing = expected_ids - got
        extra = got - expected_ids
        t.check(not missing and not extra, "rows: %d missing (e.g. %s), %d unexpected (e.g. %s)" %
                (len(missing), sorted(missing)[:3], len(extra), sorted(extra)[:3]))
        epp_rollups.assert_exact(conn)
    finally:
        conn.close()


def offsets(url, group, topic):
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT partition, next_offset FROM public.epp_consumer_offsets "
                        "WHERE group_id = %s AND topic = %s", (group, topic))
            return dict(cur.fetchall())
    finally:
        conn.close()


def metric(svc, name, labels=None):
    """The value of one series from the service's /metrics (0 when absent)."""
    return t.metric_value(svc, name, labels, default=0.0)


def setup(prefix, partitions=4):
    """env, a fresh database URL and a fresh topic."""
    env = t.load_env()
    name = t.unique_name(prefix)
    url = t.create_database(env, name)
    topic = t.create_topic(env, name, partitions=partitions)
    return env, url, topic


def elapsed(t0):
    return "%.1fs" % (time.monotonic() - t0)


def finish(env, url, svc, rc, t0):
    """The end of a test with one consumer: it exited 0 (rc, from svc.stop()), its database is
    dropped, and "ok" with the time taken."""
    t.check(rc == 0, "exit code %s:\n%s" % (rc, svc.log_tail()))
    t.drop_database(env, url)
    print("ok (%s)" % elapsed(t0))


def produce_evenly(env, topic, msgs, seconds, errors, wait_when_full=False, stop=None):
    """Produces msgs ((key, value) tuples) to topic evenly over about `seconds`: a chunk every
    0.1 s, then a flush. Meant as a thread's target while the test disturbs the consumer, so it
    raises nothing: every failure is appended to errors (a list the caller checks after join).

    With wait_when_full, a full local producer queue (BufferError) waits for deliveries and
    retries the message instead of ending the stream with an error; large streams need it.
    stop: a threading.Event that ends the stream early (what was produced is flushed)."""
    try:
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 5})
        chunk = max(1, len(msgs) // max(1, int(seconds / 0.1)))
        for i in range(0, len(msgs), chunk):
            if stop is not None and stop.is_set():
                break
            for k, v in msgs[i:i + chunk]:
                while True:
                    try:
                        p.produce(topic, key=k, value=v)
                        break
                    except BufferError:
                        if not wait_when_full:
                            raise
                        p.poll(0.05)
            p.poll(0)
            time.sleep(0.1)
        if p.flush(30) != 0:
            errors.append("produce did not finish")
    except Exception as e:  # noqa: BLE001 - reported to the test through errors
        errors.append(repr(e))


def wait_caught_up(env, url, group, topic, timeout=60.0, procs=()):
    """Waits until the offsets table has reached every partition's high watermark."""
    hw = {p: hi for p, (lo, hi) in t.topic_offsets(env, topic).items()}

    def done():
        for p in procs:
            if p.proc is not None and not p.alive():
                raise t.TestFailure("%s died (%s):\n%s" % (p.program, p.proc.returncode,
                                                           p.log_tail()))
        try:
            got = offsets(url, group, topic)
        except Exception:  # noqa: BLE001 - the database may be restarting
            return False
        return all(got.get(p, 0) >= hi for p, hi in hw.items() if hi > 0)
    t.wait_for(done, timeout=timeout, interval=0.2, msg="offsets at the high watermarks %s" % hw)
    return hw


def consume_dlq(env, topic, count, timeout=30):
    """The confluent_kafka messages (headers included) of a dead-letter topic, from the
    beginning: waits for count of them, then 2 s more for any unexpected extra one."""
    from confluent_kafka import Consumer
    cons = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
                     "group.id": t.unique_name("dlqread"), "auto.offset.reset": "earliest"})
    cons.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is None or m.error():
                continue
            out.append(m)
        # Anything more would be an unexpected extra dead letter.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            m = cons.poll(0.2)
            if m is not None and not m.error():
                out.append(m)
    finally:
        cons.close()
    return out
