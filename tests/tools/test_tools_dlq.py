"""epp-admin dlq list / replay against the real stack (issue 7: "dlq replay of a message whose
cause was fixed stores it once").

The cause: a CHECK constraint that rejects one event name (standing in for a schema that was
too strict). Events go in through epp-ingest; epp-consumer stores the good ones and
dead-letters the rejected one with its error headers. `dlq list` shows it with the reason; the
constraint is dropped (the fix); `dlq replay` re-publishes it and it is stored; a second replay
stores nothing more (idempotent on event_id); rollups stay exact.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_rollups  # noqa: E402
import epp_stack  # noqa: E402
import epp_testlib as t  # noqa: E402


def admin(env, s, *args, ok=True):
    e = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=env["KAFKA_BOOTSTRAP_SERVERS"],
             KAFKA_TOPIC=s.topic, KAFKA_DLQ_TOPIC=s.dlq_topic, DATABASE_URL=s.db_url)
    p = subprocess.run([t.bin_path(env, "epp-admin")] + list(args), capture_output=True,
                       text=True, timeout=60, env=e)
    if ok:
        t.check(p.returncode == 0, "epp-admin %s -> %d\n%s\n%s" %
                (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def post(s, user, name, i):
    st, _, body = t.http_json("POST", s.ingest_url + "/events",
                              {"user_id": user, "event_name": name, "metadata": {"i": i}})
    t.check(st == 202, "POST /events -> %s %r" % (st, body))
    return body["event_id"]


def rows(s, where, params=()):
    return s.count_rows(where, params)


def main():
    env = t.load_env()
    with epp_stack.Stack(env, "tools_dlq", services=("consumer", "ingest")) as s:
        conn = s.db()
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE public.events ADD CONSTRAINT tools_dlq_no_blocked "
                        "CHECK (event_name <> 'blocked_name')")
        good = [post(s, "dlq-user", "click", i) for i in range(5)]
        blocked = post(s, "dlq-user", "blocked_name", 99)
        s.wait_rows(5)

        # The dead letter arrives (the consumer isolates the rejected row).
        def dlq_has_it():
            p = admin(env, s, "dlq", "list", "--filter", blocked)
            return p.stdout if "matched=1" in p.stdout else None
        out = t.wait_for(dlq_has_it, timeout=30, msg="the dead letter in " + s.dlq_topic)
        t.check("error.code=" in out and "error.message=" in out and
                "source.topic=" + s.topic in out, "dlq list shows the reason: %s" % out)
        t.check(rows(s, "true") == 5 and rows(s, "event_id = %s", (blocked,)) == 0,
                "only the good rows are stored")
        m = re.search(r"^(\d+):(\d+) ", out, re.M)
        t.check(m, out)
        where = "%s:%s" % (m.group(1), m.group(2))

        # Picking by offset, dry run: shows it, publishes nothing.
        p = admin(env, s, "dlq", "replay", "--offsets", where, "--dry-run")
        t.check("chosen=1" in p.stdout and blocked in p.stdout, p.stdout)
        p = admin(env, s, "dlq", "replay", ok=False)
        t.check(p.returncode == 2, "replay without a selection is refused: %s" % p.stderr)
        p = admin(env, s, "dlq", "replay", "--offsets", "%s:999999" % m.group(1), ok=False)
        t.check(p.returncode == 1 and "missing=1" in p.stdout, p.stdout)

        # The fix, then the replay: stored once.
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE public.events DROP CONSTRAINT tools_dlq_no_blocked")
        p = admin(env, s, "dlq", "replay", "--offsets", where)
        t.check("replayed=1" in p.stdout and "failed=0" in p.stdout, p.stdout)
        s.wait_rows(1, where="event_id = %s", params=(blocked,))

        # A second replay re-publishes it; the consumer stores nothing new. A later event of the
        # same user (same key, same partition, so after it in order) shows the replay was read.
        p = admin(env, s, "dlq", "replay", "--filter", blocked)
        t.check("replayed=1" in p.stdout, p.stdout)
        sentinel = post(s, "dlq-user", "click", 100)
        s.wait_rows(1, where="event_id = %s", params=(sentinel,))
        t.check(rows(s, "event_id = %s", (blocked,)) == 1, "the replayed event is stored once")
        t.check(rows(s, "true") == 7, "5 good + replayed + sentinel")
        t.check(rows(s, "event_id = ANY(%s::uuid[])", (good,)) == 5, "good rows untouched")
        epp_rollups.assert_exact(conn)
        conn.close()
    print("ok")


if __name__ == "__main__":
    main()
