#!/usr/bin/env bash
# bench_scale: throughput with several processes of each service on one 3-node Apache Kafka
# cluster (issue 18), and the CPU each part spends per event -- the per-core figures of
# docs/scaling.md.
#
# 1. A private Postgres (scripts/pg.sh, default durability) and a private 3-node Kafka cluster
#    (scripts/kafka.sh; topics with replication factor 3, min.insync.replicas 2).
# 2. Consumer: BENCH_SCALE_EVENTS canonical events (default 600,000) produced once to a
#    12-partition topic; then, for 1, 2 and 3 epp-consumer processes in one group, each round on
#    a fresh database: events/s from the first stored row to the last, CPU seconds per million
#    events of the consumers, of Postgres (every process of the cluster) and of the Kafka brokers
#    (the JVMs), read from /proc, and Postgres' WAL bytes per event.
# 3. Ingest: for 1 and 2 epp-ingest processes, BENCH_DURATION seconds (default 10) of wrk load:
#    two wrk processes (-t1 -c64 each), spread over the ingests, POSTing one ~160-byte event per
#    request, then 100 events per request (/events/batch); requests/s and events/s (every 202
#    after the cluster's acks=all acknowledgement), and CPU per event of ingest and brokers.
# The ratio to one process is printed for each. On the project's 2-core machine every process
# of every service shares the same two cores: more processes cannot add cores, so the ratios
# show the cost of coordination, and the CPU per event is the figure that carries over to
# larger machines (docs/scaling.md turns it into a capacity model).
#
# Env: EPP_BUILD_DIR, BENCH_SCALE_EVENTS, BENCH_DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
export EPP_BUILD_DIR=$BUILD
BENCH_NAME=bench_scale
# shellcheck source=bench/lib.sh
. bench/lib.sh
require_tools wrk psql java
for b in epp-consumer epp-ingest; do
    [ -x "$BUILD/bin/$b" ] || { echo "bench_scale: $BUILD/bin/$b not built"; exit 1; }
done

TMP=$(mktemp -d /tmp/epp-bench-scale.XXXXXX)
chmod 755 "$TMP"
cleanup() {
    bash "$REPO/scripts/pg.sh" stop "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT=$(free_port)
bash scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
write_post_lua "$TMP/post.lua"
echo "load: $(uptime | sed 's/.*load average/load average/')"
export BENCH_PG_ADMIN="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
export BENCH_PG_DATA="$TMP/pg" BENCH_TMP=$TMP

/usr/bin/python3 - <<'PY'
import json, os, re, subprocess, sys, time, uuid, datetime, urllib.parse
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "lib"))
import epp_testlib as t

N = int(os.environ.get("BENCH_SCALE_EVENTS", "600000"))
DUR = int(os.environ.get("BENCH_DURATION", "10"))
TMP = os.environ["BENCH_TMP"]
admin = os.environ["BENCH_PG_ADMIN"]
env = t.load_env()
env["EPP_TEST_PG_URL"] = admin


def pg_pids():
    with open(os.path.join(os.environ["BENCH_PG_DATA"], "postmaster.pid")) as f:
        pm = int(f.readline())
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pm)], capture_output=True, text=True)
    return [pm] + [int(x) for x in out.stdout.split()]


def wal_lsn():
    c = t.pg_connect(admin)
    with c.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        v = cur.fetchone()[0]
    c.close()
    return v


def wal_bytes_since(lsn):
    c = t.pg_connect(admin)
    with c.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,))
        v = float(cur.fetchone()[0])
    c.close()
    return v


def count(url):
    c = t.pg_connect(url)
    try:
        with c.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.events")
            return cur.fetchone()[0]
    except Exception:  # noqa: BLE001 - the schema may not be there yet
        return 0
    finally:
        c.close()


def consumer_round(kc, topic, k):
    url = t.create_database(env, "bench_scale_c%d" % k)
    e = {"DATABASE_URL": url, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": topic + ".dlq",
         "KAFKA_GROUP_ID": "bench_scale_%d_%s" % (k, uuid.uuid4().hex[:6]), "LOG_LEVEL": "warn"}
    procs = []
    brokers = [kc.pid(n) for n in (1, 2, 3)]
    wal0 = wal_lsn()
    pg0, br0 = t.cpu_seconds(pg_pids()), t.cpu_seconds(brokers)
    for i in range(k):
        p = t.ServiceProcess(kc.env, "epp-consumer", port=t.free_port(), extra_env=e,
                             log_name="bench-scale-consumer%d-%d" % (k, i))
        p.start()
        procs.append(p)
        if i == 0:
            t.wait_schema(url)
    first = last = None
    seen = 0
    deadline = time.monotonic() + 900
    while seen < N and time.monotonic() < deadline:
        seen = count(url)
        now = time.monotonic()
        if seen > 0 and first is None:
            first = (now, seen)
        if seen >= N:
            last = now
        time.sleep(0.2)
    pgc, brc = t.cpu_seconds(pg_pids()) - pg0, t.cpu_seconds(brokers) - br0
    cc = t.cpu_seconds([p.proc.pid for p in procs])
    wal = wal_bytes_since(wal0)
    for p in procs:
        p.stop()
    t.drop_database(env, url)
    if last is None:
        sys.exit("bench_scale: %d consumers stored %d of %d events" % (k, seen, N))
    rate = (N - first[1]) / max(last - first[0], 1e-3)
    return rate, cc, pgc, brc, wal


def wrk(url, script, dur):
    return subprocess.Popen(["wrk", "-t1", "-c64", "-d%ds" % dur, "-s", script, url],
                            stdout=subprocess.PIPE, text=True)


def wrk_rate(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(m.group(1)) if m else 0.0, int(non2xx.group(1)) if non2xx else 0


def batch_lua(path):
    ev = ('{"user_id":"user-%06d","event_name":"page_view","metadata":{"path":"/pricing",'
          '"n":12}}')
    body = '{"events":[' + ",".join(ev % i for i in range(100)) + "]}"
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'%s\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n' % body)


def ingest_round(kc, topic, k, script, path, per_request):
    e = {"KAFKA_TOPIC": topic, "LOG_LEVEL": "warn", "HTTP_BIND_ADDRESS": "127.0.0.1"}
    procs = [t.ServiceProcess(kc.env, "epp-ingest", port=t.free_port(), extra_env=e,
                              log_name="bench-scale-ingest%d-%d" % (k, i)).start()
             for i in range(k)]
    for p in procs:
        t.wait_for(lambda: t.http_json("POST", p.url("/events"), {
            "user_id": "warm", "event_name": "warm"}, timeout=30)[0] == 202, timeout=60,
            msg="a 202 from ingest")
    brokers = [kc.pid(n) for n in (1, 2, 3)]
    br0, ic0 = t.cpu_seconds(brokers), t.cpu_seconds([p.proc.pid for p in procs])
    runs = [wrk(procs[i % k].url(path), script, DUR) for i in range(2)]
    outs = [r.communicate()[0] for r in runs]
    brc = t.cpu_seconds(brokers) - br0
    ic = t.cpu_seconds([p.proc.pid for p in procs]) - ic0
    for p in procs:
        p.stop()
    rates = [wrk_rate(o) for o in outs]
    rps = sum(r for r, _ in rates)
    bad = sum(b for _, b in rates)
    # Only 2xx answers count: a 503 is an event not taken.
    good = max(rps - bad / DUR, 0)
    return rps, good * per_request, bad, ic, brc


kc = t.KafkaCluster(env, nodes=3).start()
try:
    print("3-node Kafka cluster: %s" % kc.env["KAFKA_BOOTSTRAP_SERVERS"])
    topic = t.create_topic(kc.env, "bench_scale_events", partitions=12)
    t.create_topic(kc.env, topic + ".dlq", partitions=1)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": kc.env["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 20,
                  "acks": "all", "enable.idempotence": True, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 2000000})
    t0 = time.monotonic()
    base = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    for i in range(N):
        ts = (base + datetime.timedelta(microseconds=i * 7200 * 1000000 // N)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        user = "user-%d" % (i * 7919 % 100000)
        v = ('{"event_id":"%s","user_id":"%s","event_name":"e%d","timestamp":"%s",'
             '"received_at":"%s","metadata":{"page":"/p/%d","n":%d}}' %
             (uuid.uuid4(), user, i % 20, ts, ts, i % 5000, i))
        while True:
            try:
                p.produce(topic, key=user, value=v)
                break
            except BufferError:
                p.poll(0.05)
        if i % 20000 == 0:
            p.poll(0)
    if p.flush(300) != 0:
        sys.exit("bench_scale: produce did not finish")
    print("produced %d events in %.1fs" % (N, time.monotonic() - t0))

    print("\nconsumer: %d events from a 12-partition topic (RF 3) into Postgres" % N)
    print("%-10s %12s %8s %18s %18s %18s %16s" % ("processes", "events/s", "vs 1",
                                                   "consumer CPU s/M", "Postgres CPU s/M",
                                                   "brokers CPU s/M", "WAL bytes/event"))
    base_rate = None
    for k in (1, 2, 3):
        rate, cc, pgc, brc, wal = consumer_round(kc, topic, k)
        base_rate = base_rate or rate
        print("%-10d %12.0f %7.2fx %18.1f %18.1f %18.1f %16.0f" %
              (k, rate, rate / base_rate, cc * 1e6 / N, pgc * 1e6 / N, brc * 1e6 / N, wal / N),
              flush=True)

    batch_lua(os.path.join(TMP, "batch.lua"))
    for label, script, path, per in (
            ("POST /events, 1 event per request", "post.lua", "/events", 1),
            ("POST /events/batch, 100 events per request", "batch.lua", "/events/batch", 100)):
        print("\ningest: %s, %ds, 2 x wrk -t1 -c64, acks=all on 3 brokers" % (label, DUR))
        print("%-10s %12s %12s %8s %10s %18s %18s" % ("processes", "requests/s", "events/s",
                                                      "vs 1", "non-2xx", "ingest CPU s/M",
                                                      "brokers CPU s/M"))
        base_rate = None
        for k in (1, 2):
            rps, eps, bad, ic, brc = ingest_round(kc, topic, k, os.path.join(TMP, script), path,
                                                  per)
            base_rate = base_rate or eps
            n = max(eps * DUR, 1)
            print("%-10d %12.0f %12.0f %7.2fx %10d %18.1f %18.1f" %
                  (k, rps, eps, eps / base_rate, bad, ic * 1e6 / n, brc * 1e6 / n), flush=True)
finally:
    kc.stop()
PY
