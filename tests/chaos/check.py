"""The verdict on one chaos scenario (Harness.finish) and the result formats.

After the faults: the load stops, stopped services and Kafka nodes are resumed, every unknown
event is resent until it is acknowledged or refused (Harness.retry_unknown), and once the
consumer has drained (every distinct event_id in the topic is a row, or the row count stopped
moving) the scenario fails on any of:
    lost        acknowledged event_ids missing from public.events
    expired     (only where the scenario expects a retention gap) the missing acknowledged
                events that the broker's retention deleted before they were read, or that wait
                behind that gap in the stalled partition -- reported loudly by the consumer, not
                lost by epp; anything else missing is lost
    phantom     refused event_ids present, plus rows whose event_id was never sent
    duplicated  event_ids stored more than once (the primary key forbids it; checked anyway)
    rollups     epp_rollup_minute/hour/day and the user bitmaps differ from GROUP BY public.events
    corrupted   acknowledged rows whose user_id / event_name differ from what was sent
    crashes     a service or Kafka node that died without a planned kill (noticed at the next
                planned kill or restart, or at the end)
    unresolved  an event neither acknowledged nor definitely refused after the resends: a
                scenario in which ingest refuses everything with 503s fails here
    no fault    the scenario marked no fault window (Harness.fault)
    acks        fewer than MIN_ACKS first-answer acknowledgements before the first fault window,
                or from requests sent after the last one
    offsets     a stored offset (public.epp_consumer_offsets) moved backwards
    DLQ         any message in the dead-letter topic (ingest validated every event)
Duplicates in the TOPIC (a resent produce, a client's resend of an event that had been stored)
are counted (topic_dups) and are no failure: the consumer must absorb them.
"""

import json
import os
import time

import epp_rollups
import epp_testlib as t

MIN_ACKS = 20


def split_expired(h, missing, topic_counts, marks):
    """For a scenario where the broker's retention deleted unread messages (expect_gap): splits
    the acknowledged events missing from public.events into (lost, expired). Expired events are
    the broker's doing, reported loudly by the consumer, not epp's loss: the ones still in the
    topic wait behind the gap of a partition whose stored offset is below the low watermark, and
    the ones gone from the topic number at most the gaps' total size. Anything else is lost."""
    conn = t.pg_connect(h.db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT partition, next_offset FROM public.epp_consumer_offsets "
                        "WHERE topic = %s", (h.topic,))
            stored = dict(cur.fetchall())
    finally:
        conn.close()
    gaps = {p: lo - stored.get(p, 0) for p, (lo, _) in marks.items() if lo > stored.get(p, 0)}
    if not gaps:
        h.problem("events are missing but no partition has a retention gap "
                  "(stored offsets %s, watermarks %s)" % (stored, marks))
        return missing, []
    held = [e for e in missing if e in topic_counts]
    gone = [e for e in missing if e not in topic_counts]
    if len(gone) > sum(gaps.values()):
        h.problem("%d missing events are gone from the topic, more than the %d messages the "
                  "retention deleted" % (len(gone), sum(gaps.values())))
        return missing, []
    h.note("expired %d: %d deleted by the broker's retention before they were read (gaps %s: "
           "stored offset -> low watermark), %d behind the gap in the stalled partition" %
           (len(missing), len(gone),
            {p: "%d->%d" % (stored.get(p, 0), marks[p][0]) for p in gaps}, len(held)))
    return [], missing


def dump(h, ids, what, topic_counts=None):
    """Writes what is known about these events to BUILD/chaos/<name>-<what>.json."""
    path = os.path.join(h.base_env["EPP_BUILD_DIR"], "chaos", "%s-%s.json" % (h.name, what))
    with open(path, "w") as f:
        json.dump([{"event": h.o.events.get(e), "requests": h.o.how.get(e),
                    "in_topic": (topic_counts or {}).get(e, 0)} for e in ids], f, indent=1)
    return path


def check_windows(h, res):
    """Every scenario marks its faults; traffic must be acknowledged before the first and
    after the last, or the scenario showed nothing about surviving the fault."""
    if not h.faults:
        h.problem("the scenario marked no fault window: it tested nothing")
        return
    first = min(s for s, _, _ in h.faults)
    last = max(e for _, e, _ in h.faults)
    res["acks_before"] = h.o.acks(answered_by=first)
    res["acks_after"] = h.o.acks(sent_from=last)
    if res["acks_before"] < MIN_ACKS:
        h.problem("%d events acknowledged before the first fault (want at least %d)" %
                  (res["acks_before"], MIN_ACKS))
    if res["acks_after"] < MIN_ACKS:
        h.problem("%d events sent after the last fault were acknowledged on their first try "
                  "(want at least %d)" % (res["acks_after"], MIN_ACKS))


def finish(h):
    """Stops the load, resends unknowns, waits for the drain, checks. Returns the result."""
    t0 = time.monotonic()
    h.stop_load()
    h.ensure_up()
    h.retry_unknown()
    t1 = time.monotonic()
    topic_counts, topic_msgs = h.read_topic()
    marks = t.topic_offsets(h.kenv, h.topic)
    t2 = time.monotonic()
    dropped = sum(lo for lo, _ in marks.values())
    if dropped and not h.expect_gap:
        h.note("the broker's retention dropped %d messages (low watermarks %s): events among "
               "them that were not stored yet cannot be seen in the topic" %
               (dropped, {p: lo for p, (lo, _) in marks.items()}))
    rows = h.count_rows() if h.expect_gap else h.wait_drained(len(topic_counts))
    h.note("check: load stop and resends %.1fs, topic read %.1fs, drain %.1fs" %
           (t1 - t0, t2 - t1, time.monotonic() - t2))
    if h.watcher:
        h.watcher.stop()
    db = h.db_rows()
    ok, failed, unknown = h.o.ids("ok"), h.o.ids("failed"), h.o.ids("unknown")
    ext = h.external or {"name": None, "acked": set(), "sent": set()}
    lost = sorted(e for e in ok | ext["acked"] if e not in db)
    expired = []
    if h.expect_gap and lost:
        lost, expired = split_expired(h, lost, topic_counts, marks)
    phantom = sorted(e for e in failed if e in db)
    strangers = sorted(e for e in db if e not in h.o.events and e not in ext["sent"])
    duplicated = sum(n - 1 for n, _, _ in db.values() if n > 1)
    corrupted = [e for e in ok if e in db and
                 (db[e][1], db[e][2]) != (h.o.events[e]["user_id"], h.o.events[e]["event_name"])]
    not_in_topic = sum(1 for e in ok if e not in topic_counts)
    topic_dups = sum(n - 1 for n in topic_counts.values() if n > 1)
    conn = t.pg_connect(h.db_url)
    try:
        rollup_problems = epp_rollups.check(conn)
    finally:
        conn.close()
    dlq_counts, _ = h.read_topic(h.dlq, timeout=20)
    h.kafka.check(h)
    for s in h.services():
        if not s.alive() and not s.killed_on_purpose:
            s.check_unplanned("at the end")
    crashed = [s.name for s in h.services() if s.crashes]
    for s in h.consumers:
        if s.alive():
            vals = {m: s.metric("epp_consumer_" + m) for m in
                    ("retries_total", "duplicates_skipped_total", "commit_unknown_total",
                     "offset_reset_errors_total")}
            if any(vals.values()):
                h.note("%s (since its last start): %s" % (s.name, ", ".join(
                    "%s=%d" % (k, v) for k, v in vals.items() if v)))
    if ext["name"]:
        h.note("%s: %d events sent, %d acknowledged (202), %d of its other events stored" %
               (ext["name"], len(ext["sent"]), len(ext["acked"]),
                sum(1 for e in ext["sent"] - ext["acked"] if e in db)))
    res = {
        "scenario": h.scenario,
        "requests": h.o.requests,
        "ok": h.o.first["ok"], "failed": h.o.first["failed"], "unknown": h.o.first["unknown"],
        "final_ok": len(ok), "final_unknown": len(unknown),
        "lost": len(lost), "phantom": len(phantom) + len(strangers),
        "duplicated": duplicated, "expired": len(expired),
        "rows": rows, "topic_msgs": topic_msgs, "topic_dups": topic_dups,
        "not_in_topic": not_in_topic, "dlq": sum(dlq_counts.values()),
        "rollups": "exact" if not rollup_problems else "DIFF(%d)" % len(rollup_problems),
        "corrupted": len(corrupted), "crashed": crashed,
        "max_latency_s": round(h.o.max_latency, 2),
        "statuses": {str(k): v for k, v in sorted(h.o.statuses.items(),
                                                  key=lambda kv: str(kv[0]))},
        "faults": [[round(s - h.t0, 1), round(e - h.t0, 1), w] for s, e, w in h.faults],
    }
    check_windows(h, res)
    if unknown:
        h.problem("%d events neither acknowledged nor refused after the resends (first 5: %s); "
                  "details in %s" % (len(unknown), sorted(unknown)[:5],
                                     dump(h, sorted(unknown), "unresolved", topic_counts)))
    if h.watcher and h.watcher.backwards:
        h.problem("stored offsets moved backwards (partition, before, after): %s" %
                  [b[:3] for b in h.watcher.backwards[:5]])
    if lost:
        h.problem("lost (first 5): %s; %d of the lost are not in the topic either; details in %s"
                  % (lost[:5], sum(1 for e in lost if e not in topic_counts),
                     dump(h, lost, "lost", topic_counts)))
    if phantom:
        h.problem("phantom (first 5): %s" % phantom[:5])
    if strangers:
        h.problem("rows never sent (first 5): %s" % strangers[:5])
    if duplicated:
        h.problem("%d duplicate rows" % duplicated)
    if rollup_problems:
        h.problem("rollups differ: " + "; ".join(rollup_problems[:5]))
    if corrupted:
        h.problem("corrupted rows (first 5): %s" % corrupted[:5])
    if res["dlq"]:
        h.problem("%d messages in the DLQ (ingest validated them all)" % res["dlq"])
    res["notes"] = list(h.notes)
    res["problems"] = list(h.problems)
    res["passed"] = not h.problems
    return res


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def format_line(r):
    return "%-28s %8d %8d %7d %8d %5d %8d %11d  %s" % (
        r["scenario"], r["requests"], r["ok"], r["failed"], r["unknown"], r["lost"], r["phantom"],
        r["duplicated"], "passed" if r["passed"] else "failed")


HEADER = "%-28s %8s %8s %7s %8s %5s %8s %11s  %s" % (
    "scenario", "requests", "ok", "failed", "unknown", "lost", "phantom", "duplicated", "result")


def format_details(r):
    d = ("# rows=%d topic_msgs=%d topic_dups=%d expired=%d rollups=%s retried_ok=%d "
         "still_unknown=%d acks_before=%s acks_after=%s max_latency=%.2fs statuses=%s" %
         (r["rows"], r["topic_msgs"], r["topic_dups"], r.get("expired", 0), r["rollups"],
          r["final_ok"] - r["ok"], r["final_unknown"], r.get("acks_before", "-"),
          r.get("acks_after", "-"), r["max_latency_s"],
          json.dumps(r["statuses"], separators=(",", ":"))))
    for s, e, w in r.get("faults", []):
        d += "\n#   fault: t+%.1fs..t+%.1fs %s" % (s, e, w)
    for n in r["notes"]:
        d += "\n#   note: " + n
    for p in r["problems"]:
        d += "\n#   PROBLEM: " + p
    return d


def markdown_table(path):
    last = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                last[(r.get("mode", "short"), r.get("kafka", "dev"), r["scenario"])] = r
    print("| mode | kafka | scenario | requests | ok | failed | unknown | lost | phantom "
          "| duplicated | expired | topic dups | rollups | acks before/after | s | result |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|")
    for (mode, kafka, name), r in last.items():
        print("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s/%s | %s | %s |"
              % (mode, kafka, name, r["requests"], r["ok"], r["failed"], r["unknown"], r["lost"],
                 r["phantom"], r["duplicated"], r.get("expired", "-"), r.get("topic_dups", "-"),
                 r.get("rollups", "-"), r.get("acks_before", "-"), r.get("acks_after", "-"),
                 r.get("seconds", "-"), "passed" if r["passed"] else "**failed**"))
    return 0
