"""epp-consumer basics: rows stored once with metadata text exact, rollups equal GROUP BY,
in-batch duplicates, the same messages produced twice (acceptance: 20,000 twice -> 20,000 rows),
/health /ready /metrics, SIGTERM -> exit 0 with the offsets table at the end of the topic."""

import json
import sys
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_basic")
    group = "g_" + topic
    n = 20000
    msgs = c.make_events(n, seed=7)
    # Duplicates inside one batch: the same message three times in a row, at a few places.
    produced = []
    for i, m in enumerate(msgs):
        produced.append(m)
        if i % 5000 == 17:
            produced.append(m)
            produced.append(m)
    t.produce(env, topic, produced)
    svc = c.consumer(env, url, topic, group=group)
    svc.start()
    try:
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        ids = {c.event_id_of(v) for _, v in msgs}
        c.check_exact(url, ids)
        print("first pass: %d rows exact (%s)" % (n, c.elapsed(t0)))

        # metadata::text is exactly what was sent (big integers, 0.1, escapes).
        conn = t.pg_connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT event_id::text, metadata::text, user_id, event_name, "
                        "to_char(\"timestamp\" AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), processed_at > now() - "
                        "interval '10 minutes' FROM public.events")
            rows = {r[0]: r[1:] for r in cur.fetchall()}
        conn.close()
        for _, v in msgs[:2000]:
            ev = json.loads(v)
            md_text = v.decode().split('"metadata":', 1)[1][:-1]
            row = rows[ev["event_id"]]
            # jsonb normalises spacing (", " and ": "); compare as jsonb would print it.
            t.check(json.loads(row[0]) == json.loads(md_text), "metadata differs: %r" % (row[0],))
            t.check('12345678901234567890' in row[0] and '0.1' in row[0], "digits lost: %r" % row[0])
            t.check(row[1] == ev["user_id"] and row[2] == ev["event_name"], "fields differ")
            t.check(row[3] == ev["timestamp"], "timestamp %r != %r" % (row[3], ev["timestamp"]))
            t.check(row[4], "processed_at not set at write time")

        # Health endpoints and metrics.
        for path in ("/health", "/ready"):
            status, _, _ = t.http_request("GET", svc.url(path))
            t.check(status == 200, "%s answered %s" % (path, status))
        consumed = c.metric(svc, "epp_consumer_messages_consumed_total")
        inserted = c.metric(svc, "epp_consumer_rows_inserted_total")
        dups = c.metric(svc, "epp_consumer_duplicates_skipped_total")
        t.check(consumed == len(produced), "consumed %s, produced %d" % (consumed, len(produced)))
        t.check(inserted == n, "rows_inserted_total %s != %d" % (inserted, n))
        t.check(dups == len(produced) - n, "duplicates_skipped_total %s" % dups)
        t.check(c.metric(svc, "epp_consumer_batch_size_count") > 0, "no batch_size histogram")
        t.check(c.metric(svc, "epp_consumer_write_duration_seconds_count") > 0,
                "no write duration histogram")
        t.wait_for(lambda: t.metric_present(svc, "epp_consumer_lag"), timeout=5, msg="lag gauge")

        # The same 20,000 messages again: no new row, exact rollups.
        t.produce(env, topic, msgs)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, ids)
        t.check(c.metric(svc, "epp_consumer_rows_inserted_total") == n, "replay inserted rows")
        t.check(c.metric(svc, "epp_consumer_duplicates_skipped_total") == len(produced) - n + n,
                "replay duplicates not counted")
        print("replay: still %d rows, rollups exact (%s)" % (n, c.elapsed(t0)))
    finally:
        rc = svc.stop()
    t.check(rc == 0, "SIGTERM exit code %s; log:\n%s" % (rc, svc.log_tail()))
    log = svc.log_text()
    t.check('"migration applied"' in log, "migrations not applied at start-up")
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
