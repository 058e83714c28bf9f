"""The body of bench/bench_consumer.sh (which starts the private Postgres and sets BENCH_*): the
consumer's insert rate on five workloads against `psql \\copy` of exactly the same rows, its
end-to-end latency, and its recovery after a burst. Not run directly.

Workloads (issue 16), each sent through epp-ingest (POST /events/batch, 500 events a request,
explicit event_ids and timestamps, so that the \\copy file holds exactly the rows the consumer
stores) into its own topic, then drained by the consumer:

    live            timestamps in arrival order over 2 days, 100,000 users, 64 partitions
    ingest-24       the same through 24 partitions and 30,000 users
    backfill        timestamps scattered over 30 days, 30,000 users, 24 partitions
    few-partitions  as ingest-24 through 6 partitions
    fat             as ingest-24 with ~1 KB of metadata per event (nested objects, arrays,
                    long strings); BENCH_CONSUMER_FAT_SHARE (0.25) of the events

Before its first round, each workload runs one `\\copy` of its rows that is printed and not
counted (the warm-up): on this machine a run's first bulk load, right after the first workload's
send, ran at 0.64-0.68x of the next one, back to back, and the first after each later workload's
send at 0.87-0.94x of its later rounds (bench/README.md, "2026-12-03: a faster machine, and a
warm-up").

Each workload runs BENCH_CONSUMER_ROUNDS (3) rounds; a round is `psql \\copy` into a fresh
database with the schema, then the consumer into another fresh database (a new consumer group
reading the topic from the start). The consumer's rate counts from its first committed batch to
its last (the group join is not insert time). Printed: each round's ratio, the median, the
consumer's CPU time and peak RSS (VmHWM). In the first round, also the floor: the consumer's
final tables (events, rollups, user dictionary and bitmaps) loaded into a fresh database by
`\\copy`, the least Postgres must write for what the consumer stores (state_copy_rate).

With BENCH_CONSUMER_PROFILE=1 (the wrapper then loads pg_stat_statements and logs lock waits
over 10 ms), each round also prints where the time went in Postgres: the statements by total
time (pg_stat_statements), the WAL written per event by \\copy and by the consumer, and the lock
waits between writers (log_lock_waits).

Then (BENCH_CONSUMER_LATENCY=1) the end-to-end phase: epp-ingest and epp-consumer running,
BENCH_CONSUMER_RATE (20,000) events/s POSTed for BENCH_CONSUMER_SECONDS (10) by 16 client
threads; 202 -> row visible from Postgres' commit timestamps. And the burst: epp-load sends twice
that rate for 10 s; the time from the burst's end until every produced message is stored is the
recovery time (target < 5 s)."""

import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.getcwd(), "tests", "lib"))
import epp_testlib as t  # noqa: E402

N = int(os.environ.get("BENCH_CONSUMER_EVENTS", "1000000"))
ROUNDS = int(os.environ.get("BENCH_CONSUMER_ROUNDS", "3"))
BROKER = os.environ.get("BENCH_CONSUMER_BROKER", "kafka")
NODES = int(os.environ.get("BENCH_CONSUMER_NODES", "1"))
FAT_SHARE = float(os.environ.get("BENCH_CONSUMER_FAT_SHARE", "0.25"))
TMP = os.environ["BENCH_TMP"]
ADMIN = os.environ["BENCH_PG_ADMIN"]
EXTRA = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_CONSUMER_ENV", "").split() if kv)
PROFILE = os.environ.get("BENCH_CONSUMER_PROFILE") == "1"
PG_LOG = os.environ.get("BENCH_PG_LOG", "")

WORKLOADS = {
    "live": dict(parts=64, users=100000, days=2, scattered=False, fat=False, target=0.90),
    "ingest-24": dict(parts=24, users=30000, days=2, scattered=False, fat=False, target=0.85),
    "backfill": dict(parts=24, users=30000, days=30, scattered=True, fat=False, target=0.50),
    "few-partitions": dict(parts=6, users=30000, days=2, scattered=False, fat=False, target=0.80),
    "fat": dict(parts=24, users=30000, days=2, scattered=False, fat=True, target=0.85),
}
default_wl = "live" if BROKER == "dev" else ",".join(WORKLOADS)
SELECTED = [w for w in os.environ.get("BENCH_CONSUMER_WORKLOADS", default_wl).split(",") if w]
for w in SELECTED:
    if w not in WORKLOADS:
        sys.exit("bench_consumer: unknown workload %r (known: %s)" % (w, ", ".join(WORKLOADS)))

env = t.load_env()
env["EPP_TEST_PG_URL"] = ADMIN
BASE = datetime.datetime(2026, 10, 20, tzinfo=datetime.timezone.utc)  # + 30 days: not in the future
NAMES = ["page_view"] * 8 + ["click"] * 5 + ["event_%d" % i for i in range(18)]
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


# Targets missed in this run (printed at the end; the exit status is then 1).
MISSED = []


def db_url(name):
    u = urllib.parse.urlsplit(ADMIN)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, "", ""))


def psql(url, *args):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


def uuid7(ms, rnd):
    h = "%012x7%03x%04x%012x" % (ms, rnd.getrandbits(12), 0x8000 | rnd.getrandbits(14),
                                 rnd.getrandbits(48))
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:])


def fat_metadata(i, rnd):
    """~1 KB: nested objects, arrays and long strings, no character that needs escaping."""
    words = lambda k: " ".join(rnd.choice(WORDS) for _ in range(k))  # noqa: E731
    md = {"page": "/p/%d" % (i % 5000), "n": i,
          "ua": "Mozilla/5.0 (X11; Linux x86_64) " + words(12),
          "ctx": {"session": {"id": "s-%d" % rnd.getrandbits(40), "depth": rnd.randrange(20),
                              "flags": [True, False, None], "geo": {"lat": 48.85, "lon": 2.35}}},
          "items": [{"sku": "sku-%d" % rnd.randrange(10000), "qty": rnd.randrange(1, 5),
                     "price": "%d.%02d" % (rnd.randrange(100), rnd.randrange(100)),
                     "tags": [rnd.choice(WORDS) for _ in range(3)]} for _ in range(4)],
          "text": words(45)}
    return json.dumps(md, separators=(",", ":"))


def events(name, spec, n):
    """Yields (json, tsv line) for workload name: the same rows every call (seeded)."""
    rnd = random.Random(name)
    span_ms = spec["days"] * 86400 * 1000
    base_ms = int(BASE.timestamp()) * 1000
    arrive_ms = int(datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc).timestamp()) * 1000
    for i in range(n):
        if spec["scattered"]:
            ts_ms = base_ms + rnd.randrange(span_ms)
        else:
            ts_ms = base_ms + i * span_ms // n + rnd.randrange(2000)
        # event_ids as epp-ingest makes them: UUIDv7 of the arrival time, in arrival order.
        eid = uuid7(arrive_ms + i // 50, rnd)
        user = "user-%d" % rnd.randrange(spec["users"])
        ev_name = NAMES[rnd.randrange(len(NAMES))]
        ts = datetime.datetime.fromtimestamp(ts_ms // 1000, datetime.timezone.utc)
        tss = ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ts_ms % 1000)
        if spec["fat"]:
            md = fat_metadata(i, rnd)
        else:
            md = '{"page":"/p/%d","ref":"campaign-%d","n":%d}' % (i % 5000, i % 37, i)
        js = ('{"event_id":"%s","user_id":"%s","event_name":"%s","timestamp":"%s","metadata":%s}'
              % (eid, user, ev_name, tss, md))
        yield js, "%s\t%s\t%s\t%s\t%s\n" % (eid, user, ev_name, md, tss)


def send_through_ingest(benv, topic, name, spec, n, tsv):
    """Produces the workload's n events through a private epp-ingest; writes the tsv."""
    import http.client
    ingest = t.ServiceProcess(benv, "epp-ingest", port=t.free_port(),
                              extra_env={"KAFKA_TOPIC": topic, "LOG_LEVEL": "warn",
                                         "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]},
                              log_name="bench-consumer-ingest-" + name).start()
    t.wait_for(lambda: t.http_request("GET", ingest.url("/ready"))[0] == 200, timeout=60,
               msg="epp-ingest ready")
    lock = threading.Lock()
    gen = events(name, spec, n)
    out = open(tsv, "w")
    errors = []
    sent = [0]

    def next_batch():
        with lock:
            js, lines = [], []
            for e, line in gen:
                js.append(e)
                lines.append(line)
                if len(js) == 500:
                    break
            out.writelines(lines)
            return js

    def sender():
        conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=120)
        while not errors:
            js = next_batch()
            if not js:
                return
            todo = js
            # An event the broker did not acknowledge in time is refused alone (503 for all of
            # them); its event_id makes the resend idempotent.
            for attempt in range(30):
                body = '{"events":[' + ",".join(todo) + "]}"
                conn.request("POST", "/events/batch", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                reply = resp.read()
                if resp.status == 503:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if resp.status >= 300:
                    errors.append((resp.status, reply[:300]))
                    return
                failed = [r["index"] for r in json.loads(reply)["results"] if "error" in r]
                with lock:
                    sent[0] += len(todo) - len(failed)
                if not failed:
                    break
                todo = [todo[i] for i in failed]
                time.sleep(0.2 * (attempt + 1))
            else:
                errors.append(("gave up", reply[:300]))
                return

    t0 = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.close()
    ingest.stop()
    if errors:
        sys.exit("bench_consumer: epp-ingest refused a batch: %r" % (errors[0],))
    wm = t.topic_offsets(benv, topic)
    total = sum(hi for lo, hi in wm.values())
    lows = sum(1 for lo, hi in wm.values() if lo != 0)
    print("  sent %d events through epp-ingest in %.1fs (%d partitions hold %d, low watermarks "
          "all 0: %s)" % (sent[0], time.monotonic() - t0, len(wm), total,
                          "yes" if lows == 0 else "NO"), flush=True)
    # A resend after a delivery timeout may store a message twice (the consumer stores its row
    # once): more messages than events is fine, fewer is not.
    if total < n or lows:
        sys.exit("bench_consumer: the topic does not hold the %d events" % n)
    return total


def wal_lsn(url):
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        v = int(cur.fetchone()[0])
    conn.close()
    return v


def lock_waits():
    """Lines of the server log that report a lock wait (log_lock_waits)."""
    try:
        with open(PG_LOG) as f:
            return sum(1 for line in f if "still waiting for" in line)
    except OSError:
        return 0


def profile_start(url):
    if not PROFILE:
        return None
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cur.execute("SELECT pg_stat_statements_reset()")
    conn.close()
    return wal_lsn(url), lock_waits()


def profile_report(url, start, n, what):
    if start is None:
        return
    wal = wal_lsn(url) - start[0]
    print("    %s: WAL %.0f bytes per event, %d lock waits over 10 ms" % (
        what, wal / n, lock_waits() - start[1]))
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT calls, total_exec_time, rows, shared_blks_hit + shared_blks_read, "
                    "wal_bytes, regexp_replace(left(query, 90), '\\s+', ' ', 'g') "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE "
                    "datname = current_database()) ORDER BY total_exec_time DESC LIMIT 9")
        for calls, ms, rows, blks, walb, q in cur.fetchall():
            print("      %7.0f ms %6d calls %9d rows %8d blocks %8.1f MB WAL  %s" % (
                ms, calls, rows, blks, float(walb) / 1e6, q))
    conn.close()


def checkpoint():
    """Writes out what the previous load left dirty, so that no measured load pays for the one
    before it (each 1M-row load writes about as much WAL as max_wal_size: left alone, the
    checkpoint it triggers runs through the next load, whichever that is)."""
    psql(ADMIN, "-c", "CHECKPOINT")


def copy_rate(tsv, n, tag):
    name = "bc_copy_" + tag
    t.create_database(env, name)
    t.apply_migrations(db_url(name))
    prof = profile_start(db_url(name))
    checkpoint()
    t0 = time.monotonic()
    psql(db_url(name), "-c", "\\copy public.events (event_id, user_id, event_name, metadata, "
         "\"timestamp\") FROM '%s'" % tsv)
    secs = time.monotonic() - t0
    profile_report(db_url(name), prof, n, "\\copy")
    t.drop_database(env, name)
    return n / secs


# What the consumer stores, loaded in bulk (`\copy` of its final tables, the first round of each
# workload): public.events (whose trigger fills epp_event_ids, as for the plain `\copy`), the
# rollups (whose triggers keep the totals), the user dictionary and the user bitmaps. That is the
# least Postgres must write for the consumer's result, with none of its per-batch work (upserts,
# merges, offsets, one transaction per batch): how close the consumer comes to it says how much
# is the consumer's, and how much is the schema's.
STATE_TABLES = ["public.events", "public.epp_rollup_minute", "public.epp_rollup_hour",
                "public.epp_rollup_day", "public.epp_user_ids", "public.epp_user_bitmap_minute",
                "public.epp_user_bitmap_hour", "public.epp_user_bitmap_day"]


def state_copy_rate(src_url, n, tag):
    files = []
    out = ["-c", "SET TIME ZONE 'UTC'"]
    for tbl in STATE_TABLES:
        f = os.path.join(TMP, "%s_%s.copy" % (tag, tbl.split(".")[1]))
        out += ["-c", "\\copy (SELECT * FROM %s) TO '%s'" % (tbl, f)]
        files.append((tbl, f))
    psql(src_url, *out)
    name = "bc_state_" + tag
    t.create_database(env, name)
    t.apply_migrations(db_url(name))
    # One psql per table, so that each table's share shows (a connection costs ~10 ms).
    checkpoint()
    secs, parts = 0.0, []
    for tbl, f in files:
        t0 = time.monotonic()
        psql(db_url(name), "-c", "SET TIME ZONE 'UTC'", "-c", "\\copy %s FROM '%s'" % (tbl, f))
        dt = time.monotonic() - t0
        secs += dt
        with open(f) as fh:
            rows = sum(1 for _ in fh)
        parts.append("%s %.2fs/%d rows" % (tbl.split(".")[1], dt, rows))
    print("  final state, per table: " + ", ".join(parts), flush=True)
    t.drop_database(env, name)
    for _, f in files:
        os.unlink(f)
    return n / secs


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consumer_rate(benv, topic, n, total, tag, state=False):
    """Drains topic into a fresh database: (rows/s from the first commit, cpu s, peak RSS MB,
    and with state the rate of state_copy_rate on its result, else None)."""
    url = t.create_database(env, "bc_cons_" + tag)
    prof = profile_start(url)
    svc_env = {"DATABASE_URL": url, "KAFKA_TOPIC": topic, "KAFKA_GROUP_ID": "bench_" + tag,
               "LOG_LEVEL": "warn", "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]}
    svc_env.update(EXTRA)
    svc = t.ServiceProcess(benv, "epp-consumer", port=t.free_port(), extra_env=svc_env,
                           log_name="bench-consumer-" + tag)
    checkpoint()
    start = time.monotonic()
    svc.start()
    conn, first = None, None
    try:
        while True:
            if not svc.alive():
                sys.exit("bench_consumer: epp-consumer died:\n" + svc.log_tail())
            try:
                if conn is None:
                    conn = t.pg_connect(url)
                with conn.cursor() as cur:
                    cur.execute("SELECT coalesce(sum(next_offset), 0) "
                                "FROM public.epp_consumer_offsets")
                    done = int(cur.fetchone()[0])
            except Exception:  # noqa: BLE001 - schema not there yet
                conn = None
                done = 0
            now = time.monotonic()
            if done > 0 and first is None:
                first = (now, done)
            if done >= total:
                break
            if now - start > 1800:
                sys.exit("bench_consumer: timed out at %d rows" % done)
            time.sleep(0.02)
        end = time.monotonic()
        cpu = proc_cpu(svc.proc.pid)
        rss = proc_status(svc.proc.pid, "VmHWM") / 1024.0
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.events")
            rows = cur.fetchone()[0]
            cur.execute("SELECT sum(n) FROM public.epp_rollup_minute")
            rolled = cur.fetchone()[0]
        conn.close()
    finally:
        svc.stop()
    if rows != n or rolled != n:
        sys.exit("bench_consumer: %d rows, rollups count %s, expected %d" % (rows, rolled, n))
    profile_report(url, prof, n, "epp-consumer")
    floor = state_copy_rate(url, n, tag) if state else None
    t.drop_database(env, url)
    if first[1] >= total:  # everything in one commit: no interval to measure
        return n / (end - start), cpu, rss, floor
    return n * (total - first[1]) / total / (end - first[0]), cpu, rss, floor


def run_workload(benv, name):
    spec = WORKLOADS[name]
    n = max(1000, int(N * FAT_SHARE)) if spec["fat"] else N
    topic = "bench_" + name.replace("-", "_")
    print("--- %s: %d events, %d partitions, %d users, %s over %d days%s" % (
        name, n, spec["parts"], spec["users"], "scattered" if spec["scattered"] else
        "arrival order", spec["days"], ", ~1 KB metadata" if spec["fat"] else ""), flush=True)
    t.create_topic(benv, topic, partitions=spec["parts"])
    tsv = os.path.join(TMP, topic + ".tsv")
    total = send_through_ingest(benv, topic, name, spec, n, tsv)
    print("  warm-up (not counted): \\copy %7.0f rows/s" % copy_rate(tsv, n, topic + "_warm"),
          flush=True)
    ratios, cpus, rsss, rates, copies = [], [], [], [], []
    floor = None
    for r in range(ROUNDS):
        tag = "%s_%d" % (topic, r)
        c = copy_rate(tsv, n, tag)
        rate, cpu, rss, f = consumer_rate(benv, topic, n, total, tag, state=r == 0)
        if f is not None:
            floor = (f, c, rate)
            print("  round %d: the consumer's final state loaded by \\copy: %7.0f rows/s "
                  "(%.2fx of the plain \\copy; the consumer %.2fx of it)" % (
                      r + 1, f, f / c, rate / f), flush=True)
        ratios.append(rate / c)
        cpus.append(cpu)
        rsss.append(rss)
        rates.append(rate)
        copies.append(c)
        print("  round %d: \\copy %7.0f rows/s, epp-consumer %7.0f rows/s: %.2fx (consumer CPU "
              "%.1fs, peak RSS %.0f MB)" % (r + 1, c, rate, rate / c, cpu, rss), flush=True)
    os.unlink(tsv)
    med = statistics.median(ratios)
    if med < spec["target"]:
        MISSED.append("%s %.2fx < %.2fx" % (name, med, spec["target"]))
    if max(rsss) >= 128:
        MISSED.append("%s peak RSS %.0f MB >= 128 MB" % (name, max(rsss)))
    if floor is not None:
        print("%s: the consumer's final state loaded in bulk: %.0f rows/s, %.2fx of the plain "
              "\\copy; the consumer reached %.2fx of that floor (round 1)" % (
                  name, floor[0], floor[0] / floor[1], floor[2] / floor[0]), flush=True)
    print("%s: median %.2fx of \\copy (rounds %s; consumer %0.f rows/s, \\copy %.0f rows/s "
          "median); CPU %.1fs, peak RSS %.0f MB; target >= %.2fx: %s%s" % (
              name, med, " ".join("%.2f" % x for x in ratios), statistics.median(rates),
              statistics.median(copies), statistics.median(cpus), max(rsss), spec["target"],
              "PASS" if med >= spec["target"] else "FAIL",
              (" [" + " ".join("%s=%s" % kv for kv in EXTRA.items()) + "]") if EXTRA else ""),
          flush=True)
    return med


def latency_phase(benv):
    import http.client
    rate = int(os.environ.get("BENCH_CONSUMER_RATE", "20000"))
    secs = float(os.environ.get("BENCH_CONSUMER_SECONDS", "10"))
    ltopic = "bench_latency"
    t.create_topic(benv, ltopic, partitions=32)
    url = t.create_database(env, "bench_latency")
    ingest = t.ServiceProcess(benv, "epp-ingest", port=t.free_port(),
                              extra_env={"KAFKA_TOPIC": ltopic, "LOG_LEVEL": "warn",
                                         "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]},
                              log_name="bench-latency-ingest").start()
    cons_env = {"DATABASE_URL": url, "KAFKA_TOPIC": ltopic, "KAFKA_GROUP_ID": "lat",
                "LOG_LEVEL": "info", "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]}
    cons_env.update(EXTRA)
    cons = t.ServiceProcess(benv, "epp-consumer", port=t.free_port(), extra_env=cons_env,
                            log_name="bench-latency-consumer").start()
    try:
        # The group join is not latency: wait until the consumer owns the partitions.
        t.wait_for(lambda: "partitions assigned" in cons.log_text(), timeout=60,
                   msg="consumer assigned")
        # Warm-up, not measured: the producer's and the consumer's connection set-up.
        warm = 0
        for k in range(20):
            evs = [{"user_id": "warm-%d" % i, "event_name": "warm"} for i in range(100)]
            st, _, rep = t.http_json("POST", ingest.url("/events/batch"),
                                     json.dumps({"events": evs}),
                                     {"Content-Type": "application/json"}, timeout=30)
            warm += rep["accepted"] if st < 300 else 0
        conn = t.pg_connect(url)

        def count():
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM public.events")
                return cur.fetchone()[0]
        t.wait_for(lambda: count() >= warm, timeout=30, msg="warm-up events stored")
        # Enough senders that one slow acknowledgement does not hold the offered rate back
        # (each thread waits for its reply before its next scheduled send).
        nthreads, per = 16, 100
        interval = nthreads * per / rate
        sent = [0] * nthreads
        acked = {}  # "k-i" (thread, request) -> wall time of the 202, in microseconds
        errors = []

        def client(k):
            hc = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=10)
            r = random.Random(k)
            next_t = time.monotonic() + k * interval / nthreads
            end = time.monotonic() + secs
            i = 0
            while next_t < end:
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                now_us = time.time_ns() // 1000
                req = "%d-%d" % (k, i)
                evs = [{"user_id": "user-%d" % r.randrange(100000),
                        "event_name": "lat_%d" % r.randrange(10),
                        "metadata": {"sent_us": now_us, "req": req}} for _ in range(per)]
                hc.request("POST", "/events/batch", json.dumps({"events": evs}),
                           {"Content-Type": "application/json"})
                resp = hc.getresponse()
                body = resp.read()
                acked[req] = time.time_ns() // 1000
                if resp.status >= 300:
                    errors.append((resp.status, body[:200]))
                else:
                    sent[k] += json.loads(body)["accepted"]
                next_t += interval
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(nthreads)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        achieved = sum(sent) / (time.monotonic() - t0)
        total = sum(sent)
        deadline = time.monotonic() + 60
        while count() < total + warm and time.monotonic() < deadline:
            time.sleep(0.1)
        with conn.cursor() as cur:
            cur.execute("""
                WITH l AS (SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6
                                   - (metadata->>'sent_us')::bigint) / 1000.0 AS ms
                           FROM public.events WHERE metadata ? 'sent_us')
                SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) FROM l""")
            n_rows, p50, p99, mx = cur.fetchone()
            cur.execute("""
                WITH l AS (SELECT (metadata->>'sent_us')::bigint / 1000000 AS s,
                                  (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6
                                   - (metadata->>'sent_us')::bigint) / 1000.0 AS ms
                           FROM public.events WHERE metadata ? 'sent_us')
                SELECT s - min(s) OVER (), count(*), round(max(ms)) FROM l GROUP BY s
                ORDER BY s""")
            by_second = cur.fetchall()
            # The measure: from the 202 (taken by the client when the reply arrived,
            # so a little late) to the commit that made the row visible.
            cur.execute("""
                SELECT metadata->>'req',
                       (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint
                FROM public.events WHERE metadata ? 'req'""")
            after_ack = sorted((c - acked[q]) / 1000.0 for q, c in cur.fetchall() if q in acked)

        def pct(v, q):
            return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
        target = 500 if NODES == 3 else 300
        p99a = pct(after_ack, 0.99)
        print("latency: %d events at %.0f events/s offered (%d client errors): 202 -> row "
              "visible p50 %.0f ms, p99 %.0f ms, max %.0f ms (target p99 < %d ms: %s); "
              "send -> row visible p50 %.0f ms, p99 %.0f ms, max %.0f ms" %
              (len(after_ack), achieved, len(errors), pct(after_ack, 0.5), p99a,
               after_ack[-1] if after_ack else float("nan"), target,
               "PASS" if p99a < target else "FAIL", p50, p99, mx), flush=True)
        if not p99a < target:
            MISSED.append("latency p99 %.0f ms >= %d ms" % (p99a, target))
        print("  per second of sending (s, events, max ms): %s" %
              " ".join("%d:%d:%d" % tuple(r) for r in by_second), flush=True)
        if errors:
            print("  first client error: %r" % (errors[0],))

        # Burst: twice the rate for 10 s (epp-load, open loop), then the time until every
        # message the topic holds is stored.
        burst_rps = 2 * rate / 100
        t0 = time.monotonic()
        load = subprocess.run([t.bin_path(env, "epp-load"), "--url", ingest.url("/events"),
                               "--rps", str(burst_rps), "--batch", "100", "--duration", "10s",
                               "--connections", "64", "--users", "100000", "--json"],
                              capture_output=True, text=True, timeout=120)
        burst_end = time.monotonic()
        try:
            report = json.loads(load.stdout)
        except ValueError:
            report = {}
        wm = t.topic_offsets(benv, ltopic)
        want = sum(hi for lo, hi in wm.values())
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(sum(next_offset), 0) FROM public.epp_consumer_offsets"
                            " WHERE topic = %s", (ltopic,))
                done = cur.fetchone()[0]
            if done >= want or time.monotonic() - burst_end > 120:
                break
            time.sleep(0.02)
        rec = time.monotonic() - burst_end
        print("burst: %d requests of 100 events answered 2xx in %.1fs (%.0f events/s offered, "
              "%.0f achieved; epp-load rc %d), every message stored %.2f s after the burst "
              "(target < 5 s): %s" % (
                  report.get("ok", 0), burst_end - t0, burst_rps * 100,
                  report.get("events_per_s", 0), load.returncode, rec,
                  "PASS" if rec < 5 else "FAIL"), flush=True)
        if not rec < 5:
            MISSED.append("burst recovery %.2f s >= 5 s" % rec)
        if load.returncode != 0:
            print("  epp-load: statuses %r, errors %r %s" % (report.get("status"),
                                                            report.get("errors"),
                                                            load.stderr.strip()[-300:]))
        conn.close()
    finally:
        cons.stop()
        ingest.stop()
        t.drop_database(env, "bench_latency")


def main():
    if BROKER == "dev":
        broker = t.DevBroker(env, partitions=64).start()
        what = "the dev broker (librdkafka's mock cluster)"
    else:
        broker = t.KafkaCluster(env, nodes=NODES).start()
        what = "Apache Kafka, %d node%s (scripts/kafka.sh)" % (NODES, "s" if NODES > 1 else "")
    benv = broker.env
    print("broker: %s at %s; load average %s" % (what, benv["KAFKA_BOOTSTRAP_SERVERS"],
                                                 " ".join(open("/proc/loadavg").read().split()[:3])),
          flush=True)
    try:
        for name in SELECTED:
            run_workload(benv, name)
        if os.environ.get("BENCH_CONSUMER_LATENCY", "1") != "0":
            latency_phase(benv)
    finally:
        broker.stop()
    if MISSED:
        # A benchmark that misses a target says so and fails (bench/run.sh reports it).
        print("bench_consumer: targets missed: " + "; ".join(MISSED), flush=True)
        sys.exit(1)


main()
