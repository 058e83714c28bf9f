"""The chaos harness's traffic: events, the HTTP load, and what ingest answered for each event.

Every event carries a client-chosen event_id; a few percent are invalid on purpose (they must be
refused and never stored). Each event's outcome:
    ok       202 (a single event) or a per-index result with its event_id and no error
    failed   a definite refusal: a 4xx, or a per-index validation error
    unknown  a timeout, a 5xx (503 kafka_unavailable / queue_full), a refused or reset
             connection, or a per-index Kafka or internal error: it may or may not be stored,
             and only a resend with the same event_id settles it
Outcomes also keeps when each request was sent and answered (wall-clock seconds), so that a
scenario can ask what happened inside a fault window.
"""

import http.client
import json
import random
import threading
import time
import uuid


class Outcomes:
    """Every event sent, and what the service answered for it. Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = {}      # event_id -> event dict
        self.state = {}       # event_id -> "ok" | "failed" | "unknown"
        self.requests = 0
        self.statuses = {}    # HTTP status (or exception name) -> count
        self.errors = {}      # "status code: message" of each 5xx error answer -> count
        self.max_latency = 0.0
        self.first = {"ok": 0, "failed": 0, "unknown": 0}   # first answer per event
        self.how = {}         # event_id -> [(path, status, sent at (epoch s), latency s)]
        self.ok_at = {}       # event_id -> (sent, answered) when its FIRST answer was ok
        self.answers = []     # per request, retries excluded: (sent, answered, status)

    def record_request(self, status, sent, answered, retry=False):
        with self.lock:
            self.requests += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.max_latency = max(self.max_latency, answered - sent)
            if not retry:
                self.answers.append((sent, answered, status))

    def record_error(self, status, err):
        """Counts a 5xx answer's error (its code and message), so that a scenario that expected
        none can say which it got."""
        if status < 500:
            return
        err = err if isinstance(err, dict) else {}
        key = "%s %s: %s" % (status, err.get("code"), err.get("message"))
        with self.lock:
            self.errors[key] = self.errors.get(key, 0) + 1

    def set(self, eid, outcome, retry=False, sent=None, answered=None):
        with self.lock:
            prev = self.state.get(eid)
            if not retry:
                self.first[outcome] += 1
                if outcome == "ok":
                    self.ok_at[eid] = (sent, answered)
            # ok (a promise) and failed (a definite refusal) are final; unknown can be upgraded.
            if prev in (None, "unknown"):
                self.state[eid] = outcome

    def ids(self, outcome):
        with self.lock:
            return {e for e, s in self.state.items() if s == outcome}

    def acks(self, sent_from=0.0, answered_by=float("inf")):
        """Events whose first answer was ok, sent at or after sent_from and answered by
        answered_by (wall-clock seconds)."""
        with self.lock:
            return sum(1 for s, a in self.ok_at.values() if s >= sent_from and a <= answered_by)

    def first_ack(self, sent_from):
        """When the first acknowledgement of an event sent at or after sent_from arrived."""
        with self.lock:
            return min((a for s, a in self.ok_at.values() if s >= sent_from), default=None)

    def statuses_answered(self, t0, t1):
        """{status: requests} answered within [t0, t1], retries excluded."""
        out = {}
        with self.lock:
            for _, a, st in self.answers:
                if t0 <= a <= t1:
                    out[st] = out.get(st, 0) + 1
        return out


_NAMES = ["page_view", "click", "signup", "purchase", "search", "logout", "add_to_cart"]


def make_event(valid=True, ts_spread_s=3 * 86400, pad=0):
    eid = str(uuid.uuid4())
    now_ms = int(time.time() * 1000)
    ev = {
        "event_id": eid,
        "user_id": "u%d" % random.randrange(300),
        "event_name": random.choice(_NAMES),
        "metadata": {"n": random.randrange(1 << 30), "big": 12345678901234567890, "x": 0.1,
                     "s": "é😀"},
    }
    ts = now_ms - random.randrange(ts_spread_s * 1000)
    if random.random() < 0.5:
        ev["timestamp"] = ts
    else:
        ev["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + \
            ".%03dZ" % (ts % 1000)
    if pad:
        ev["metadata"]["pad"] = "p" * pad
    if not valid:
        kind = random.randrange(3)
        if kind == 0:
            ev["timestamp"] = now_ms + 3 * 86400 * 1000     # far future: 400
        elif kind == 1:
            ev["event_name"] = ""                           # empty: 400
        else:
            ev["evnt"] = "typo"                              # unknown field: 400
    return ev


_KAFKA_CODES = ("kafka_unavailable", "queue_full", "out_of_memory", "shutting_down",
                "unavailable", "internal")


class Loader:
    """Threads POSTing events to epp-ingest at a steady rate until stop().

    port_fn() gives the current ingest port (it survives restarts on the same port)."""

    def __init__(self, outcomes, port_fn, rps=200, threads=4, batch_frac=0.25, batch_size=20,
                 invalid_frac=0.03, timeout=15.0, pad=0, ts_spread_s=3 * 86400):
        self.o = outcomes
        self.port_fn = port_fn
        self.rps = rps
        self.nthreads = threads
        self.batch_frac = batch_frac
        self.batch_size = batch_size
        self.invalid_frac = invalid_frac
        self.timeout = timeout
        self.pad = pad
        self.ts_spread_s = ts_spread_s
        self.stop_ev = threading.Event()
        self.threads = []
        self.errors = []

    def start(self):
        for i in range(self.nthreads):
            th = threading.Thread(target=self._run, args=(i,), daemon=True)
            th.start()
            self.threads.append(th)
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(self.timeout + 10)
        self.threads = []

    def _events(self, n):
        evs = [make_event(random.random() >= self.invalid_frac, self.ts_spread_s, self.pad)
               for _ in range(n)]
        with self.o.lock:
            for ev in evs:
                self.o.events[ev["event_id"]] = ev
        return evs

    def _run(self, idx):
        period = self.nthreads / float(self.rps)
        conn = None
        next_t = time.monotonic() + random.random() * period
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if next_t > now:
                time.sleep(min(next_t - now, 0.2))
                continue
            next_t += period
            if next_t < now - 1.0:          # fell behind (an outage): do not burst afterwards
                next_t = now
            batch = random.random() < self.batch_frac
            evs = self._events(self.batch_size if batch else 1)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port_fn(),
                                                      timeout=self.timeout)
                conn = send_events(self.o, conn, evs, batch)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
                conn = None


def send_events(o, conn, evs, batch, retry=False):
    """POSTs evs (one event, or a batch) on conn and records each outcome. Returns the
    connection to reuse (None when it must be reopened)."""
    if batch:
        path, body = "/events/batch", json.dumps(evs).encode()
    else:
        path, body = "/events", json.dumps(evs[0]).encode()
    sent = time.time()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
        keep = not resp.will_close
    except Exception as e:  # noqa: BLE001 - timeout, refused, reset: all unknown
        o.record_request(type(e).__name__, sent, time.time(), retry)
        for ev in evs:
            o.set(ev["event_id"], "unknown", retry)
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        if isinstance(e, (ConnectionRefusedError, ConnectionResetError)):
            time.sleep(0.05)
        return None
    answered = time.time()
    o.record_request(status, sent, answered, retry)
    with o.lock:
        for i, ev in enumerate(evs):
            o.how.setdefault(ev["event_id"], []).append(
                ("%s[%d]" % (path, i) if batch else path, status, round(sent, 3),
                 round(answered - sent, 3)))
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if batch and isinstance(parsed, dict) and isinstance(parsed.get("results"), list) \
            and len(parsed["results"]) == len(evs):
        for ev, r in zip(evs, parsed["results"]):
            err = r.get("error") if isinstance(r, dict) else None
            if err is not None:
                o.record_error(status, err)
            if err is None and isinstance(r, dict) and r.get("event_id") == ev["event_id"]:
                out = "ok"
            elif err is not None and err.get("code") in _KAFKA_CODES:
                out = "unknown"
            elif err is not None and status < 500:
                out = "failed"
            else:
                out = "unknown"
            o.set(ev["event_id"], out, retry, sent, answered)
    else:
        o.record_error(status, parsed.get("error") if isinstance(parsed, dict) else None)
        if status == 202 and not batch:
            out = "ok" if isinstance(parsed, dict) and \
                parsed.get("event_id") == evs[0]["event_id"] else "unknown"
        elif 400 <= status < 500 and status not in (408, 429):   # those two say "retry"
            out = "failed"
        else:
            out = "unknown"
        for ev in evs:
            o.set(ev["event_id"], out, retry, sent, answered)
    if not keep:
        conn.close()
        return None
    return conn
