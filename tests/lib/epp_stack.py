"""The whole local stack for end-to-end tests: a fresh database and topic on the CTest fixtures'
Postgres and broker, then epp-consumer (waited for until /ready: the schema is applied), epp-ingest
and epp-analytics on free ports. Every test that needs more than one service starts them here.

    with Stack(env) as s:
        t.http_json("POST", s.ingest_url + "/events", {...})
        s.wait_rows(1)
        t.http_json("GET", s.analytics_url + "/analytics/events/count?...")
"""
import os
import time

import epp_testlib as t


class Stack:
    def __init__(self, env, name="stack", services=("consumer", "ingest", "analytics"),
                 partitions=4, extra_env=None, service_env=None):
        """extra_env: variables for every service; service_env: {"ingest": {...}, ...}."""
        self.env = env
        self.name = t.unique_name(name)
        self.services = services
        self.partitions = partitions
        self.extra_env = dict(extra_env or {})
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.procs = {}
        self.db_url = None
        self.topic = self.name + "_events"
        self.dlq_topic = self.name + "_dlq"
        self.group = self.name + "_group"

    # The environment each service gets: its own database, topic, DLQ and group.
    def service_environ(self, service):
        e = {
            "DATABASE_URL": self.db_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "KAFKA_TOPIC": self.topic,
            "KAFKA_DLQ_TOPIC": self.dlq_topic,
            "KAFKA_GROUP_ID": self.group,
            "LOG_LEVEL": "info",
        }
        e.update(self.extra_env)
        e.update(self.service_env.get(service, {}))
        return e

    def start(self):
        self.db_url = t.create_database(self.env, self.name)
        t.create_topic(self.env, self.topic, partitions=self.partitions)
        t.create_topic(self.env, self.dlq_topic, partitions=1)
        # The consumer first, and the others only once it is ready: its /ready answers 200 only
        # after it has applied the migrations (before joining the group), so the schema the
        # analytics service and the tests read is there (tools.dlq once found no public.events).
        for svc in ("consumer", "ingest", "analytics"):
            if svc in self.services:
                self.start_service(svc)
                if svc == "consumer":
                    self.wait_ready(svc)
        return self

    def start_service(self, svc, port=None, extra_env=None):
        """Starts svc on port (default: a free one) with extra_env on top of service_environ."""
        env = self.service_environ(svc)
        env.update(extra_env or {})
        for attempt in range(40):
            p = t.ServiceProcess(self.env, "epp-" + svc, port=port or t.free_port(),
                                 extra_env=env, log_name="%s-%s" % (self.name, svc))
            try:
                p.start()
                break
            except t.TestFailure:
                # The port given may still be held a moment by the process just stopped.
                p.stop()
                if port is None or attempt == 39 or "in use" not in p.log_tail(5):
                    raise
                time.sleep(0.25)
        self.procs[svc] = p
        return p

    def wait_ready(self, svc, timeout=60.0):
        """Waits until svc's /ready answers 200 (for the consumer: migrations applied, Postgres
        and Kafka reachable)."""
        p = self.procs[svc]
        t.wait_for(lambda: p.alive() and t.http_request("GET", p.url("/ready"), timeout=5)[0] == 200,
                   timeout=timeout, msg="%s ready" % svc)

    def restart_service(self, svc, extra_env=None):
        """Stops svc (when running) and starts it again on the same port, so that clients and
        scrapers keep its address; extra_env as for start_service."""
        p = self.procs[svc]
        p.stop()
        return self.start_service(svc, port=p.port, extra_env=extra_env)

    def url(self, svc):
        return self.procs[svc].url("")

    @property
    def ingest_url(self):
        return self.url("ingest")

    @property
    def analytics_url(self):
        return self.url("analytics")

    @property
    def consumer_url(self):
        return self.url("consumer")

    def db(self):
        return t.pg_connect(self.db_url)

    def count_rows(self, where="true", params=()):
        conn = self.db()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM public.events WHERE " + where, params)
                return cur.fetchone()[0]
        finally:
            conn.close()

    def wait_rows(self, n, timeout=30.0, where="true", params=()):
        """Waits until public.events holds at least n rows matching where; returns the count."""
        return t.wait_for(lambda: (lambda c: c if c >= n else 0)(self.count_rows(where, params)),
                          timeout=timeout, msg="%d rows in public.events" % n)

    def stop(self):
        for svc in ("ingest", "analytics", "consumer"):
            p = self.procs.pop(svc, None)
            if p:
                p.stop()
        if self.db_url and not os.environ.get("EPP_TEST_KEEP_DB"):
            t.drop_database(self.env, self.db_url)

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
