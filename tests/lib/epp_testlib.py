"""Helpers shared by epp's integration tests (Python 3 stdlib + psycopg2 + confluent_kafka).

Import with:

    sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
    import epp_testlib as t

The CTest fixtures `pg` and `broker` (tests/fixtures) write ${build}/test-env/env with:
    EPP_TEST_PG_URL        superuser URL to the `postgres` database
    EPP_TEST_PG_HOST, EPP_TEST_PG_PORT, EPP_TEST_PG_DATA, EPP_TEST_PG_BINDIR
    KAFKA_BOOTSTRAP_SERVERS  one Apache Kafka node (scripts/kafka.sh), shared by all tests

Tests create their OWN database (create_database) and their OWN topics (unique_name +
create_topic) so that they never interfere with each other, even under `ctest -j`.
The fixture broker is SHARED: never stop it or fault it. A test that faults brokers starts a
private cluster; only a fault that only librdkafka's mock cluster can inject (errors injected
into chosen requests, added round-trip times) justifies a private dev broker, and the test says
which fault in a comment:

    with t.KafkaCluster(env, nodes=3) as kc:    # kc.env: env with this cluster's bootstrap
        kc.kill(2)
    with t.DevBroker(env, brokers=2) as kenv:   # kenv: env with this broker's addresses
        t.broker_control(kenv, "POST", "/errors?api=Produce&count=5&codes=6")

Typical use:

    env = t.load_env(build_dir)
    url = t.create_database(env, t.unique_name("consumer_basic"))
    with t.ServiceProcess(env, "epp-consumer", port=t.free_port(),
                          extra_env={"DATABASE_URL": url}) as svc:
        status, headers, body = t.http_json("GET", svc.url("/metrics"))
    t.drop_database(env, url)
"""

import json
import os
import signal as _signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
import free_port as _free_port  # noqa: E402 (found through the path just added)

__all__ = [
    "REPO", "TestFailure", "check", "load_env", "build_dir_from", "bin_path", "git", "unique_name",
    "free_port", "wait_for", "pg_connect", "create_database", "drop_database", "apply_migrations",
    "pg_sessions_in_transaction", "freeze_outside_transaction", "wait_schema", "cpu_seconds",
    "http_request", "http_json", "metric_value", "broker_control", "create_topic", "kafka_producer",
    "produce", "consume_all", "topic_offsets", "ServiceProcess", "start_process", "DevBroker",
    "KafkaCluster",
]


class TestFailure(AssertionError):
    pass


def check(cond, msg="check failed"):
    """Like assert, but never compiled out (python3 -O) and with a message."""
    if not cond:
        raise TestFailure(msg)


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------

def build_dir_from(argv=None):
    """The build directory: argv[1] when given (tests are registered as `python3 test.py
    ${CMAKE_BINARY_DIR}`), else $EPP_BUILD_DIR, else REPO/build."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and os.path.isdir(argv[1]):
        return os.path.abspath(argv[1])
    if os.environ.get("EPP_BUILD_DIR"):
        return os.path.abspath(os.environ["EPP_BUILD_DIR"])
    return os.path.join(REPO, "build")


def load_env(build_dir=None):
    """Returns a dict: the KEY=VALUE lines of BUILD/test-env/env, plus EPP_BUILD_DIR. Values
    already in os.environ win (so a test can be pointed at another stack by hand)."""
    build_dir = os.path.abspath(build_dir or build_dir_from())
    env = {}
    path = os.path.join(build_dir, "test-env", "env")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                env[k] = v
    for k in ("EPP_TEST_PG_URL", "EPP_TEST_PG_HOST", "EPP_TEST_PG_PORT", "EPP_TEST_PG_DATA",
              "EPP_TEST_PG_BINDIR", "KAFKA_BOOTSTRAP_SERVERS", "EPP_DEVBROKER_CONTROL"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    env["EPP_BUILD_DIR"] = build_dir
    return env


def bin_path(env_or_build_dir, name):
    """build/bin/NAME (absolute)."""
    b = env_or_build_dir["EPP_BUILD_DIR"] if isinstance(env_or_build_dir, dict) else env_or_build_dir
    return os.path.join(b, "bin", name)


def git(*args, ok=(0,), repo=REPO):
    """Run `git -C repo ARGS...` and return its CompletedProcess (text); a return code outside
    `ok` is a failure, never an answer. safe.directory=* because CI runs as root on a checkout
    another user owns, where git refuses (exit 128, "dubious ownership") every command."""
    p = subprocess.run(["git", "-c", "safe.directory=*", "-C", repo] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    check(p.returncode in ok, "git %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p


def unique_name(prefix="t"):
    """A name safe for databases and topics: prefix_<pid>_<random>, lowercase."""
    return ("%s_%d_%s" % (prefix, os.getpid(), uuid.uuid4().hex[:8])).lower()


def free_port():
    """A TCP port free a moment ago, below the kernel's ephemeral range: scripts/lib/free_port.py
    says why, and is the one picker of the scripts, the tests and the benches."""
    return _free_port.free_port()


def wait_for(pred, timeout=10.0, interval=0.05, msg="condition"):
    """Polls pred() until it returns a truthy value, which is returned. Raises TestFailure after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - the predicate may fail until ready
            last_exc = e
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s%s" %
                              (timeout, msg, " (last error: %r)" % last_exc if last_exc else ""))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------------------------

def pg_connect(url, autocommit=True):
    import psycopg2
    conn = psycopg2.connect(url)
    conn.autocommit = autocommit
    return conn


def _db_url(env, name):
    u = urllib.parse.urlsplit(env["EPP_TEST_PG_URL"])
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def create_database(env, name=None):
    """Creates a fresh database (dropped first if it exists) and returns its URL. name defaults
    to a unique one."""
    name = name or unique_name("db")
    check(name.replace("_", "").isalnum(), "database name must be [A-Za-z0-9_]: %r" % name)
    conn = pg_connect(env["EPP_TEST_PG_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
            cur.execute('CREATE DATABASE "%s"' % name)
    finally:
        conn.close()
    return _db_url(env, name)


def drop_database(env, name_or_url):
    """Drops a database (by name or by the URL create_database returned), disconnecting its
    clients. No error when it does not exist."""
    name = name_or_url
    if "://" in name_or_url:
        name = urllib.parse.urlsplit(name_or_url).path.lstrip("/")
    conn = pg_connect(env["EPP_TEST_PG_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    finally:
        conn.close()


def _tcp_ports_to(pid, remote_port):
    """Local ports of the TCP connections process pid has open to remote_port (its sockets'
    inodes matched against /proc/PID/net/tcp and tcp6)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def pg_sessions_in_transaction(url, pid):
    """The Postgres sessions of process pid (found by their client ports) that are inside a
    transaction: [(client_port, state)], state 'active' or 'idle in transaction'. Tests that
    freeze a consumer use it to tell whether the frozen process holds row locks."""
    port = urllib.parse.urlsplit(url).port or 5432
    ports = sorted(_tcp_ports_to(pid, port))
    if not ports:
        return []
    conn = pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT client_port, state FROM pg_stat_activity WHERE client_port = "
                        "ANY(%s) AND state <> 'idle'", (ports,))
            return cur.fetchall()
    finally:
        conn.close()


def freeze_outside_transaction(proc, url, tries=40):
    """SIGSTOPs proc (a ServiceProcess, e.g. epp-consumer) at a moment when none of its
    Postgres sessions on url's server is inside a transaction: a consumer frozen inside one keeps
    row locks that the other members of its group wait for, so nothing can be taken over from it
    (docs/reliability.md, Findings). Freezes, looks 0.3 s later, and resumes at once to try
    again when it caught one. Returns (the time.time() of the freeze that held, how many tries
    caught a transaction); (None, tries) when every try did (proc is then running)."""
    import random
    for i in range(tries):
        proc.send_signal(_signal.SIGSTOP)
        t0 = time.time()
        time.sleep(0.3)
        if not pg_sessions_in_transaction(url, proc.proc.pid):
            return t0, i
        proc.send_signal(_signal.SIGCONT)
        time.sleep(random.uniform(0.1, 0.6))
    return None, tries


def apply_migrations(url, sql_dir=None):
    """Applies sql/*.sql in name order (for tests that need the schema without running
    epp-consumer, which normally applies them)."""
    sql_dir = sql_dir or os.path.join(REPO, "sql")
    conn = pg_connect(url)
    try:
        with conn.cursor() as cur:
            for f in sorted(os.listdir(sql_dir)):
                if f.endswith(".sql"):
                    with open(os.path.join(sql_dir, f)) as fh:
                        cur.execute(fh.read())
    finally:
        conn.close()


def wait_schema(url, timeout=60.0, sql_dir=None):
    """Waits until the database at url has every migration of sql/ applied (epp-consumer applies
    them at start-up, after its /health already answers): a test that changes the schema itself
    (a CHECK constraint on public.events) must not race a migration that rebuilds a table."""
    sql_dir = sql_dir or os.path.join(REPO, "sql")
    newest = max(int(f.split("_", 1)[0]) for f in os.listdir(sql_dir)
                 if f.endswith(".sql") and f.split("_", 1)[0].isdigit())

    def applied():
        conn = pg_connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(max(version), 0) FROM public.epp_schema_migrations")
                return cur.fetchone()[0] >= newest
        finally:
            conn.close()
    wait_for(applied, timeout=timeout, interval=0.1, msg="migrations up to %03d" % newest)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

def http_request(method, url, body=None, headers=None, timeout=10.0):
    """One HTTP request with urllib. body: bytes, str, or a JSON-able object (sent as JSON).
    Returns (status, headers_dict_lowercase_keys, body_bytes); HTTP error statuses are returned,
    not raised. Connection failures raise (URLError / OSError)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        try:
            payload = e.read()
        finally:
            e.close()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, payload


def http_json(method, url, body=None, headers=None, timeout=10.0):
    """Like http_request, but the body is parsed as JSON when it looks like JSON (else returned
    as text). Returns (status, headers, parsed)."""
    status, hdrs, raw = http_request(method, url, body, headers, timeout)
    text = raw.decode("utf-8", "replace")
    parsed = text
    if text.strip()[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
    return status, hdrs, parsed


# Metrics: the one way tests read a service's /metrics (Prometheus text format).

def metrics_text(svc_or_url, headers=None, timeout=10.0):
    """The text of a service's /metrics (a ServiceProcess or a base URL); fails unless 200."""
    base = svc_or_url.url("") if hasattr(svc_or_url, "url") else svc_or_url.rstrip("/")
    status, _, body = http_request("GET", base + "/metrics", headers=headers, timeout=timeout)
    check(status == 200, "GET %s/metrics: %s" % (base, status))
    return body.decode("utf-8", "replace")


def metric_samples(text, name):
    """[(labels, value)] of the samples of metric `name` in a /metrics text; labels is the
    {...} part as written ("" when none)."""
    import re
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            out.append((m.group(2) or "", float(m.group(3))))
    return out


def metric_value(svc_or_url, name, labels=None, headers=None, default=None, text=None):
    """The value of metric `name` on a service's /metrics (a ServiceProcess or a base URL; or
    the text already read), summed over the series whose labels include `labels` (a dict);
    `default` when no series matches."""
    if text is None:
        text = metrics_text(svc_or_url, headers=headers)
    found = [v for lab, v in metric_samples(text, name)
             if not labels or all('%s="%s"' % kv in lab for kv in labels.items())]
    return sum(found) if found else default


def metric_present(svc_or_url, name, headers=None):
    """True when /metrics has at least one sample of `name`."""
    return bool(metric_samples(metrics_text(svc_or_url, headers=headers), name))


def broker_control(env, method, path, timeout=10.0):
    """Calls the dev broker's control API (tools/epp-devbroker/README.md), e.g.
    broker_control(env, "POST", "/brokers/down"). Returns (status, parsed_body)."""
    base = env["EPP_DEVBROKER_CONTROL"].rstrip("/")
    status, _, body = http_json(method, base + path, body=b"" if method == "POST" else None,
                                timeout=timeout)
    return status, body


def create_topic(env, name, partitions=4, config=None, timeout=30.0):
    """Creates a topic and waits until every partition has a leader; returns name. On Apache
    Kafka (the fixture, KafkaCluster) through the admin API, with replication factor
    min(3, brokers) and min.insync.replicas min(2, brokers) as the services use; an existing
    topic is kept. On a dev broker (env has EPP_DEVBROKER_CONTROL) through its control API.
    config: topic settings, e.g. {"retention.ms": "1000"} (Apache Kafka only)."""
    if env.get("EPP_DEVBROKER_CONTROL"):
        check(not config, "create_topic: the dev broker takes no topic config")
        status, body = broker_control(env, "POST", "/topics?name=%s&partitions=%d" %
                                      (urllib.parse.quote(name), partitions))
        check(status == 200, "create_topic %s: %s %r" % (name, status, body))
        return name
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": _bootstrap(env)})
    brokers = len(admin.list_topics(timeout=timeout).brokers)
    conf = {"min.insync.replicas": str(min(2, brokers))}
    conf.update(config or {})
    fut = admin.create_topics([NewTopic(name, partitions, min(3, brokers), config=conf)],
                              operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        fut.result(timeout)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise TestFailure("create_topic %s: %s" % (name, e))

    def led():
        t = admin.list_topics(name, timeout=5).topics.get(name)
        return (t is not None and t.error is None and len(t.partitions) == partitions and
                all(p.leader >= 0 for p in t.partitions.values()))

    wait_for(led, timeout=timeout, interval=0.1, msg="leaders for every partition of " + name)
    return name


# ---------------------------------------------------------------------------------------------
# Kafka (confluent_kafka, with librdkafka 2.0.2 underneath)
# ---------------------------------------------------------------------------------------------

def _bootstrap(env_or_bootstrap):
    if isinstance(env_or_bootstrap, dict):
        return env_or_bootstrap["KAFKA_BOOTSTRAP_SERVERS"]
    return env_or_bootstrap


def kafka_producer(env_or_bootstrap, **conf):
    """A confluent_kafka.Producer. conf keys use '_' or '.' (linger_ms or 'linger.ms')."""
    from confluent_kafka import Producer
    c = {"bootstrap.servers": _bootstrap(env_or_bootstrap), "linger.ms": 5}
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def produce(env_or_bootstrap, topic, messages, key=None, timeout=30.0, **conf):
    """Produces messages (iterable of bytes/str, or (key, value) tuples) and waits for every
    delivery report. Returns the number delivered; raises TestFailure listing the first error
    when any delivery failed."""
    p = kafka_producer(env_or_bootstrap, **conf)
    errors = []
    delivered = [0]

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    n = 0
    for m in messages:
        k = key
        if isinstance(m, tuple):
            k, m = m
        while True:
            try:
                p.produce(topic, value=m, key=k, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    left = p.flush(timeout)
    check(left == 0, "produce: %d messages still queued after %.0fs" % (left, timeout))
    check(not errors, "produce: %d delivery errors, first: %s" % (len(errors), errors[:1]))
    return delivered[0]


def consume_all(env_or_bootstrap, topic, count=None, group=None, timeout=30.0,
                idle_timeout=None, **conf):
    """Consumes from the beginning of topic in consumer group `group` (default: a unique one)
    until `count` messages arrived (or, with count=None, until nothing arrived for
    idle_timeout seconds, default 3). Returns a list of
    (partition, offset, key_bytes_or_None, value_bytes). Raises TestFailure on timeout before
    count, with how many arrived."""
    from confluent_kafka import Consumer, KafkaError
    c = {
        "bootstrap.servers": _bootstrap(env_or_bootstrap),
        "group.id": group or unique_name("g"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    consumer = Consumer(c)
    out = []
    if idle_timeout is None:
        idle_timeout = 3.0 if count is None else timeout
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while count is None or len(out) < count:
            now = time.monotonic()
            if now >= deadline or now - last >= idle_timeout:
                break
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            for m in batch:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise TestFailure("consume: %s" % m.error())
                out.append((m.partition(), m.offset(), m.key(), m.value()))
                last = time.monotonic()
    finally:
        consumer.close()
    if count is not None:
        check(len(out) >= count, "consume_all(%s): %d of %d messages in %.0fs" %
              (topic, len(out), count, timeout))
    return out


def topic_offsets(env_or_bootstrap, topic, timeout=10.0):
    """{partition: (low, high)} watermarks for every partition of topic."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": _bootstrap(env_or_bootstrap),
                         "group.id": unique_name("wm")})
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        parts = sorted(md.topics[topic].partitions.keys())
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in parts}
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def cpu_seconds(pids):
    """CPU seconds (user + system) the processes pids have used so far, from /proc (processes
    gone count 0). Benchmarks on shared machines report CPU per unit of work next to rates: it
    moves much less with the machine's load than wall time does."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


class ServiceProcess:
    """Runs a build/bin program (or any executable path) with env and args, captures its
    stdout+stderr into BUILD/test-logs/<log_name>.log, and (when port is given) waits for
    GET http://127.0.0.1:port<health_path> to answer 200.

    env: the load_env() dict (used for EPP_BUILD_DIR; KAFKA_BOOTSTRAP_SERVERS is passed on).
    extra_env: variables for the child on top of os.environ (e.g. DATABASE_URL, HTTP_PORT).
    port: also exported as HTTP_PORT unless extra_env sets it.

    Use as a context manager, or call start()/stop(). stop() sends SIGTERM and waits, then
    SIGKILL after the grace time; the return code is kept in .returncode."""

    def __init__(self, env, program, args=(), port=None, extra_env=None, health_path="/health",
                 log_name=None, start_timeout=20.0, cwd=None):
        self.env = env
        self.program = program if os.path.sep in program else bin_path(env, program)
        self.args = list(args)
        self.port = port
        self.health_path = health_path
        self.start_timeout = start_timeout
        self.cwd = cwd
        self.proc = None
        self.returncode = None
        child_env = dict(os.environ)
        if env.get("KAFKA_BOOTSTRAP_SERVERS"):
            child_env["KAFKA_BOOTSTRAP_SERVERS"] = env["KAFKA_BOOTSTRAP_SERVERS"]
        if port is not None:
            child_env["HTTP_PORT"] = str(port)
        child_env.update({k: str(v) for k, v in (extra_env or {}).items()})
        self.child_env = child_env
        logs = os.path.join(env["EPP_BUILD_DIR"], "test-logs")
        os.makedirs(logs, exist_ok=True)
        base = log_name or "%s-%s" % (os.path.basename(self.program), unique_name("p"))
        self.log_path = os.path.join(logs, base + ".log")

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self, wait_healthy=True):
        check(os.access(self.program, os.X_OK), "not built: %s" % self.program)
        for attempt in range(4):
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([self.program] + self.args, env=self.child_env,
                                         stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, cwd=self.cwd)
            if not (wait_healthy and self.port is not None):
                return self
            try:
                self.wait_healthy()
                return self
            except TestFailure:
                # free_port() is a guess: a test running in parallel (ctest -j2) can take the
                # same port first. Then, and only then, start again on another free port (the
                # service's url() follows self.port).
                if self.alive() or attempt == 3 or "Address already in use" not in self.log_tail(5):
                    raise
                self._log.close()
                self.port = free_port()
                self.child_env["HTTP_PORT"] = str(self.port)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout=None):
        timeout = self.start_timeout if timeout is None else timeout

        def healthy():
            if not self.alive():
                raise TestFailure("%s exited with %s during start-up; log %s:\n%s" %
                                  (self.program, self.proc.returncode, self.log_path,
                                   self.log_tail()))
            try:
                status, _, _ = http_request("GET", self.url(self.health_path), timeout=2)
                return status == 200
            except OSError:
                return False

        deadline = time.monotonic() + timeout
        while True:
            if healthy():
                return
            if time.monotonic() >= deadline:
                raise TestFailure("%s not healthy on port %s after %.0fs; log %s:\n%s" %
                                  (self.program, self.port, timeout, self.log_path,
                                   self.log_tail()))
            time.sleep(0.05)

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=15.0, sig=_signal.SIGTERM):
        """SIGTERM (or sig), wait up to timeout, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def kill(self):
        """SIGKILL (a crash), and reap."""
        return self.stop(timeout=0.1, sig=_signal.SIGKILL)

    def wait(self, timeout=None):
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def start_process(env, program, args=(), port=None, extra_env=None, **kw):
    """ServiceProcess(...).start(): returns the started (and, with port, healthy) process."""
    return ServiceProcess(env, program, args, port=port, extra_env=extra_env, **kw).start()


class KafkaCluster:
    """A private Apache Kafka cluster (scripts/kafka.sh) for one test that faults its brokers;
    the shared fixture node must never be faulted. nodes: 1 or 3. Costs a JVM start per node
    (a few seconds).

        with t.KafkaCluster(env, nodes=3) as kc:      # kc.env: env with this bootstrap
            kc.kill(2); kc.start_node(2)

    .env is a copy of env with KAFKA_BOOTSTRAP_SERVERS pointing at this cluster.
    dir: where its data goes (default: a fresh temporary directory); config: broker settings
    added to every node's server.properties (kafka.sh start --config)."""

    def __init__(self, env, nodes=1, dir=None, config=None):
        import tempfile
        self.base_env = env
        self.nodes = nodes
        self.dir = dir or tempfile.mkdtemp(prefix="kafka-")
        self.config = dict(config or {})
        self.env = None

    def sh(self, *args, check_rc=True):
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "kafka.sh")] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check_rc and r.returncode != 0:
            raise TestFailure("kafka.sh %s: rc %d\n%s%s" % (" ".join(args), r.returncode,
                                                              r.stdout, r.stderr))
        return r

    def start(self):
        args = ["start", self.dir, "--nodes", str(self.nodes)]
        for k, v in sorted(self.config.items()):
            args += ["--config", "%s=%s" % (k, v)]
        r = self.sh(*args)
        bootstrap = r.stdout.strip().splitlines()[-1].split("=", 1)[1]
        self.env = dict(self.base_env, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
        self.env.pop("EPP_DEVBROKER_CONTROL", None)
        return self

    def kill(self, node):
        """SIGKILL of one node (a crash)."""
        self.sh("kill", self.dir, str(node))

    def stop_node(self, node):
        self.sh("stop-node", self.dir, str(node))

    def start_node(self, node, wait=True):
        self.sh("start-node", self.dir, str(node), *(() if wait else ("--no-wait",)))

    def pid(self, node):
        return int(self.sh("pid", self.dir, str(node)).stdout.strip())

    def stop(self):
        self.sh("stop", self.dir, check_rc=False)
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


class DevBroker:
    """A private epp-devbroker for one test (fault injection must not hit the shared fixture
    broker). start() waits for its address files; stop() sends SIGTERM and waits.

    .env is a copy of the given env with KAFKA_BOOTSTRAP_SERVERS and EPP_DEVBROKER_CONTROL
    pointing at this broker, usable with broker_control(), produce(), ServiceProcess(...)."""

    def __init__(self, env, brokers=1, partitions=6, topics=(), log_name=None):
        import tempfile
        self.base_env = env
        self.dir = tempfile.mkdtemp(prefix="devbroker-")
        args = ["--brokers", str(brokers), "--partitions", str(partitions),
                "--addr-file", os.path.join(self.dir, "addr"),
                "--control-file", os.path.join(self.dir, "control")]
        for tp in topics:
            args += ["--topic", tp]
        self.proc = ServiceProcess(env, "epp-devbroker", args,
                                   log_name=log_name or unique_name("devbroker"))
        self.env = None

    def start(self, timeout=20.0):
        self.proc.start(wait_healthy=False)

        def ready():
            if not self.proc.alive():
                raise TestFailure("epp-devbroker exited: %s" % self.proc.log_tail())
            vals = []
            for f in ("addr", "control"):
                try:
                    with open(os.path.join(self.dir, f)) as fh:
                        vals.append(fh.read().strip())
                except OSError:
                    return None
            return vals if all(vals) else None

        addr, control = wait_for(ready, timeout, msg="epp-devbroker address files")
        self.env = dict(self.base_env, KAFKA_BOOTSTRAP_SERVERS=addr, EPP_DEVBROKER_CONTROL=control)
        return self

    def stop(self):
        rc = self.proc.stop()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def __enter__(self):
        return self.start().env

    def __exit__(self, *exc):
        self.stop()
        return False
