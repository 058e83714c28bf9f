#!/usr/bin/env bash
# bench_consumer: epp-consumer's sustained insert rate against `psql \copy` of the same rows into
# the same (fresh, empty, indexed) table, in the same run, on the same Postgres.
#
# 1. A private Postgres cluster (scripts/pg.sh, default durability) and a private dev broker.
# 2. N canonical events (default 1,000,000; 31 event names (skewed), 100,000 users, timestamps in
#    arrival order over 2 days, UUIDv7 event_ids as epp-ingest makes them) produced to a
#    topic of BENCH_CONSUMER_PARTITIONS partitions (default 64: the dev broker keeps only ~5 MiB
#    per partition, so fewer would drop data -- the low watermarks are checked to stay 0), and
#    the same rows written to a text file for psql.
# 3. Baseline: `psql \copy public.events (...) FROM file` into a fresh database with the schema
#    (primary key + 2 indexes, no rollups).
# 4. epp-consumer into another fresh database: rows + rollups + offsets. Its rate is measured
#    from the first stored row to the last (the consumer group's join delay is not insert time),
#    and the wall time from process start is printed too.
# Prints both rates and the ratio consumer / \copy (target >= 0.8).
# 5. Latency (skipped with BENCH_CONSUMER_LATENCY=0, or when epp-ingest is not built): epp-ingest
#    and epp-consumer running, events POSTed in batches of 100 at BENCH_CONSUMER_RATE events/s
#    (default 20,000) for BENCH_CONSUMER_SECONDS (10) by 16 client threads; each event carries the
#    client's send time and request id in its metadata, the client notes when each request's 202
#    arrived, and Postgres records each transaction's commit time (track_commit_timestamp): the
#    commit time minus the 202 time is "202 to row visible" for every event (target p99 <
#    500 ms), and the commit time minus the send time adds the ingest round trip. Prints
#    p50/p99/max of both.
#
# Env: EPP_BUILD_DIR, BENCH_CONSUMER_EVENTS (1000000), BENCH_CONSUMER_PARTITIONS (64),
# BENCH_CONSUMER_ENV ("KEY=VALUE ..." extra consumer settings, e.g. CONSUMER_COPY_FORMAT=text).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
export EPP_BUILD_DIR=$BUILD
for b in epp-consumer epp-devbroker; do
    [ -x "$BUILD/bin/$b" ] || { echo "bench_consumer: $BUILD/bin/$b not built"; exit 1; }
done
command -v psql >/dev/null || { echo "bench_consumer: psql not installed"; exit 1; }

TMP=$(mktemp -d /tmp/epp-bench-consumer.XXXXXX)
chmod 755 "$TMP"
cleanup() {
    bash "$REPO/scripts/pg.sh" stop "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bash scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
# Commit timestamps, for the latency phase: when each row became visible.
psql -X -q "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
    -c "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
bash scripts/pg.sh restart "$TMP/pg" fast >/dev/null
export BENCH_PG_ADMIN="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
export BENCH_TMP=$TMP

/usr/bin/python3 - <<'PY'
import os, random, subprocess, sys, time, uuid, datetime, urllib.parse
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "lib"))
import epp_testlib as t

N = int(os.environ.get("BENCH_CONSUMER_EVENTS", "1000000"))
PARTS = int(os.environ.get("BENCH_CONSUMER_PARTITIONS", "64"))
TMP = os.environ["BENCH_TMP"]
admin = os.environ["BENCH_PG_ADMIN"]
extra = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_CONSUMER_ENV", "").split() if kv)
env = t.load_env()
env["EPP_TEST_PG_URL"] = admin


def db_url(name):
    u = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, "", ""))


def psql(url, *args):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


broker = t.DevBroker(env, partitions=PARTS).start()
benv = broker.env
try:
    topic = "bench_events"
    t.create_topic(benv, topic, partitions=PARTS)
    # The events, and the same rows as a text file for psql.
    t0 = time.monotonic()
    rnd = random.Random(1)
    names = ["page_view"] * 8 + ["click"] * 5 + ["event_%d" % i for i in range(18)]
    base_ms = int(datetime.datetime(2026, 11, 20, tzinfo=datetime.timezone.utc).timestamp()) * 1000
    span_ms = 2 * 86400 * 1000
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": benv["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 20,
                  "batch.num.messages": 10000, "queue.buffering.max.messages": 2000000,
                  "queue.buffering.max.kbytes": 2097151})
    tsv = os.path.join(TMP, "events.tsv")
    with open(tsv, "w") as f:
        for i in range(N):
            # Like a live stream: timestamps in arrival order (2 days, small jitter) and the
            # UUIDv7 event_ids epp-ingest makes; both sides get exactly the same rows.
            ts_ms = base_ms + i * span_ms // N + rnd.randrange(2000)
            eid = "%012x-7%03x-%04x-%012x" % (ts_ms, rnd.getrandbits(12),
                                                0x8000 | rnd.getrandbits(14), rnd.getrandbits(48))
            eid = "%s-%s-%s-%s-%s" % (eid[0:8], eid[8:12], eid[13:17], eid[18:22], eid[23:])
            user = "user-%d" % rnd.randrange(100000)
            name = names[rnd.randrange(len(names))]
            ts = datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.timezone.utc)
            tss = ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ts_ms % 1000)
            md = '{"page":"/p/%d","ref":"campaign-%d","n":%d}' % (i % 5000, i % 37, i)
            v = ('{"event_id":"%s","user_id":"%s","event_name":"%s","timestamp":"%s",'
                 '"received_at":"%s","metadata":%s}' % (eid, user, name, tss, tss, md))
            f.write("%s\t%s\t%s\t%s\t%s\n" % (eid, user, name, md, tss))
            while True:
                try:
                    p.produce(topic, key=user, value=v)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 20000 == 0:
                p.poll(0)
    left = p.flush(120)
    del p
    wm = t.topic_offsets(benv, topic)
    lows = sum(1 for lo, hi in wm.values() if lo != 0)
    total = sum(hi for lo, hi in wm.values())
    print("produced %d events to %d partitions in %.1fs (low watermarks all 0: %s, %d in topic)"
          % (N, PARTS, time.monotonic() - t0, "yes" if lows == 0 else "NO", total))
    if left or lows or total != N:
        sys.exit("bench_consumer: the topic does not hold the %d events" % N)

    # Baseline: psql \copy into a fresh database with the same schema. Run before and after the
    # consumer (this machine is shared and noisy): the baseline is the mean of the two rates.
    def copy_rate():
        t.create_database(env, "bench_copy")
        t.apply_migrations(db_url("bench_copy"))
        t0 = time.monotonic()
        psql(db_url("bench_copy"), "-c",
             "\\copy public.events (event_id, user_id, event_name, metadata, \"timestamp\") "
             "FROM '%s'" % tsv)
        secs = time.monotonic() - t0
        t.drop_database(env, "bench_copy")
        print("psql \\copy:   %7.0f rows/s (%.2fs)" % (N / secs, secs))
        return N / secs

    copy_rates = [copy_rate()]

    # The consumer, into another fresh database.
    url = t.create_database(env, "bench_consumer")
    svc_env = {"DATABASE_URL": url, "KAFKA_TOPIC": topic, "KAFKA_GROUP_ID": "bench",
               "LOG_LEVEL": "warn", "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]}
    svc_env.update(extra)
    start = time.monotonic()
    svc = t.ServiceProcess(benv, "epp-consumer", port=t.free_port(), extra_env=svc_env,
                           log_name="bench-consumer")
    svc.start()
    conn = None
    first = None
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
            if done >= N:
                break
            if now - start > 900:
                sys.exit("bench_consumer: timed out at %d rows" % done)
            time.sleep(0.02)
        end = time.monotonic()
        with open("/proc/%d/stat" % svc.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.events")
            rows = cur.fetchone()[0]
            cur.execute("SELECT sum(n) FROM public.epp_rollup_minute")
            rolled = cur.fetchone()[0]
        conn.close()
    finally:
        svc.stop()
    if rows != N or rolled != N:
        sys.exit("bench_consumer: %d rows, rollups count %s, expected %d" % (rows, rolled, N))
    t.drop_database(env, "bench_consumer")
    # Rate over the rows stored after the first commit seen (the join delay excluded).
    sustained = (N - first[1]) / (end - first[0])
    print("epp-consumer: %7.0f rows/s sustained (%.2fs from first commit; %.2fs wall from start)"
          " -- rows + 4 rollup tables + offsets%s" %
          (sustained, end - first[0], end - start,
           (" [" + " ".join("%s=%s" % kv for kv in extra.items()) + "]") if extra else ""))
    print("epp-consumer process CPU: %.1fs (decode, COPY encoding, rollup aggregation)" % cpu_s)
    copy_rates.append(copy_rate())
    copy_mean = sum(copy_rates) / len(copy_rates)
    print("ratio consumer / \\copy: %.2fx (mean \\copy rate %.0f rows/s; target >= 0.80)" %
          (sustained / copy_mean, copy_mean))

    # Phase 2: end-to-end latency through epp-ingest.
    if os.environ.get("BENCH_CONSUMER_LATENCY", "1") != "0" and \
            os.access(t.bin_path(env, "epp-ingest"), os.X_OK):
        import json, threading
        rate = int(os.environ.get("BENCH_CONSUMER_RATE", "20000"))
        secs = float(os.environ.get("BENCH_CONSUMER_SECONDS", "10"))
        ltopic = "bench_latency"
        t.create_topic(benv, ltopic, partitions=32)
        url = t.create_database(env, "bench_latency")
        ingest = t.ServiceProcess(benv, "epp-ingest", port=t.free_port(),
                                  extra_env={"KAFKA_TOPIC": ltopic, "LOG_LEVEL": "warn",
                                             "KAFKA_BOOTSTRAP_SERVERS": benv["KAFKA_BOOTSTRAP_SERVERS"]},
                                  log_name="bench-latency-ingest").start()
        cons_env = dict(svc_env, DATABASE_URL=url, KAFKA_TOPIC=ltopic, KAFKA_GROUP_ID="lat",
                        LOG_LEVEL=svc_env.get("LOG_LEVEL") if svc_env.get("LOG_LEVEL") == "debug" else "info")
        cons = t.ServiceProcess(benv, "epp-consumer", port=t.free_port(), extra_env=cons_env,
                                log_name="bench-latency-consumer").start()
        try:
            # Wait until the consumer owns the partitions (the group join is not latency).
            t.wait_for(lambda: "partitions assigned" in cons.log_text(), timeout=30,
                       msg="consumer assigned")
            # Warm-up, not measured: the first requests also pay for the producer's and the
            # consumer's connection set-up; wait until they are stored.
            warm = 0
            for k in range(20):
                evs = [{"user_id": "warm-%d" % i, "event_name": "warm"} for i in range(100)]
                st, _, rep = t.http_json("POST", ingest.url("/events/batch"),
                                         json.dumps({"events": evs}),
                                         {"Content-Type": "application/json"}, timeout=30)
                warm += rep["accepted"] if st < 300 else 0
            wconn = t.pg_connect(url)
            t.wait_for(lambda: wconn.cursor().execute("SELECT 1") or True, timeout=5)

            def stored():
                with wconn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM public.events")
                    return cur.fetchone()[0] >= warm
            t.wait_for(stored, timeout=30, msg="warm-up events stored")
            wconn.close()
            # Enough senders that one slow acknowledgement does not hold the offered rate back
            # (each thread waits for its reply before its next scheduled send).
            nthreads, per = 16, 100
            interval = nthreads * per / rate
            sent = [0] * nthreads
            acked = {}  # "k-i" (thread, request) -> wall time of the 202, in microseconds
            errors = []

            def client(k):
                import http.client
                conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=10)
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
                    conn.request("POST", "/events/batch", json.dumps({"events": evs}),
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
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
            conn = t.pg_connect(url)
            deadline = time.monotonic() + 60
            while True:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM public.events")
                    if cur.fetchone()[0] >= total + warm or time.monotonic() > deadline:
                        break
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
                # The issue's measure: from the 202 (taken by the client when the reply arrived,
                # so a little late) to the commit that made the row visible.
                cur.execute("""
                    SELECT metadata->>'req',
                           (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint
                    FROM public.events WHERE metadata ? 'req'""")
                after_ack = sorted((c - acked[q]) / 1000.0 for q, c in cur.fetchall() if q in acked)
            conn.close()
            def pct(v, q):
                return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
            print("latency: %d events at %.0f events/s offered (%d client errors): 202 -> row "
                  "visible p50 %.0f ms, p99 %.0f ms, max %.0f ms (target p99 < 500 ms); "
                  "send -> row visible p50 %.0f ms, p99 %.0f ms, max %.0f ms" %
                  (len(after_ack), achieved, len(errors), pct(after_ack, 0.5),
                   pct(after_ack, 0.99), after_ack[-1] if after_ack else float("nan"),
                   p50, p99, mx))
            print("  per second of sending (s, events, max ms): %s" %
                  " ".join("%d:%d:%d" % tuple(r) for r in by_second))
            if errors:
                print("  first client error: %r" % (errors[0],))
        finally:
            cons.stop()
            ingest.stop()
            t.drop_database(env, "bench_latency")
finally:
    broker.stop()
PY
