"""Where a chaos scenario's Kafka runs, and the process faults a real cluster can take.

    Cluster  a private 3-node Apache Kafka cluster (scripts/kafka.sh, KRaft, replication factor
             3, min.insync.replicas 2) in BUILD/chaos/kafka-<harness pid>, started once per
             harness process and shared by its scenarios. Each scenario gets its own topics,
             deleted afterwards, and must leave every node running: end() resumes and restarts
             whatever a scenario left down (and says so), so the next scenario starts healthy.
             A node that dies without a planned kill is a crash and fails the scenario.
    Fixture  the CTest `broker` fixture's single node, shared with other tests: used only by
             scenarios that fault no broker (the services' and Postgres's faults).
    Dev      a private epp-devbroker per scenario (librdkafka's mock cluster), only for the
             faults nothing else can inject: errors in chosen Produce requests, delayed
             responses (a lost produce ack), leader moves on command.

The cluster runs with log.retention.check.interval.ms=1000 (the broker default is 5 minutes and
cannot be changed at run time) so that retention_gap's short topic retention acts within
seconds; every other setting is kafka.sh's.
"""

import os
import re
import signal
import subprocess
import time

import epp_testlib as t

NODES = (1, 2, 3)
CLUSTER_CONFIG = {"log.retention.check.interval.ms": "1000"}


def log(msg):
    print("chaos: " + msg, flush=True)


def die_with_parent():
    """In the child: SIGKILL when the harness dies (a CTest timeout kills it with SIGKILL, and
    orphaned services would hold ports and CPU)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc(t.ServiceProcess):
    """t.ServiceProcess whose child dies with the harness."""

    def start(self, wait_healthy=True):
        t.check(os.access(self.program, os.X_OK), "not built: %s" % self.program)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.program] + self.args, env=self.child_env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.cwd,
                                     preexec_fn=die_with_parent)
        if wait_healthy and self.port is not None:
            self.wait_healthy()
        return self


def _admin(bootstrap):
    from confluent_kafka.admin import AdminClient
    # log_level 2: a node that is down on purpose is no news (librdkafka logs each refused
    # connection at level 3 to stderr).
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000,
                        "log_level": 2})


class _Backend:
    """What the Harness asks of its Kafka: begin (returns the env for the services), resume
    (anything frozen, before the check), check (crashes), end."""

    kind = None

    def resume(self, h):
        pass

    def check(self, h):
        pass


class _Topics(_Backend):
    """Per-scenario topics on a shared Apache Kafka (the cluster or the fixture node)."""

    env = None

    def begin(self, h):
        h.topic = h.name + "_ev"
        h.dlq = h.name + "_dlq"
        t.create_topic(self.env, h.topic, partitions=h.partitions, config=h.topic_config)
        t.create_topic(self.env, h.dlq, partitions=1)
        return self.env

    def delete_topics(self, h):
        admin = _admin(self.env["KAFKA_BOOTSTRAP_SERVERS"])   # alive until the results
        try:
            for f in admin.delete_topics([h.topic, h.dlq], operation_timeout=30).values():
                f.result(40)
        except Exception as e:  # noqa: BLE001 - a leftover topic costs disk, not correctness
            log("could not delete %s: %r" % (h.topic, e))

    def end(self, h):
        self.delete_topics(h)


class Fixture(_Topics):
    kind = "fixture"

    def __init__(self, base_env):
        t.check(base_env.get("KAFKA_BOOTSTRAP_SERVERS") and
                not base_env.get("EPP_DEVBROKER_CONTROL"),
                "--kafka fixture needs the CTest broker fixture (FIXTURES_REQUIRED broker)")
        self.env = dict(base_env)


class Dev(_Backend):
    """A private epp-devbroker per scenario; the topics are the services' own `events` and
    `events.dlq` (a fresh broker each time)."""

    kind = "dev"

    def begin(self, h):
        h.topic, h.dlq = "events", "events.dlq"
        h.broker = t.DevBroker(h.base_env, brokers=h.brokers, partitions=h.partitions,
                               log_name="%s-devbroker" % h.name)
        h.broker.proc.__class__ = Proc   # dies with the harness too
        return h.broker.start().env

    def end(self, h):
        if h.broker:
            h.broker.stop()


def _java_hash(s):
    """Java's String.hashCode, which Kafka uses to place a group on a __consumer_offsets
    partition."""
    data = s.encode("utf-16-be")
    hsh = 0
    for i in range(0, len(data), 2):      # over UTF-16 code units, as Java does
        hsh = (31 * hsh + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return hsh - (1 << 32) if hsh >= 1 << 31 else hsh


class Cluster(_Topics):
    kind = "cluster"

    def __init__(self, base_env):
        self.base_env = base_env
        self.parent = os.path.join(base_env["EPP_BUILD_DIR"], "chaos")
        self.dir = os.path.join(self.parent, "kafka-%d" % os.getpid())
        self.kc = None
        self.env = None
        self.down = set()      # nodes stopped or killed on purpose, not started again yet
        self.frozen = set()    # nodes SIGSTOPped on purpose
        self.start_s = None

    # -- the cluster's life -------------------------------------------------------------------
    def cleanup_stale(self):
        """Stops and removes clusters left by harness processes that died (a CTest timeout
        kills the harness with SIGKILL; the JVMs run in their own sessions and outlive it)."""
        if not os.path.isdir(self.parent):
            return
        for d in os.listdir(self.parent):
            m = re.match(r"^kafka-(\d+)$", d)
            if not m or os.path.exists("/proc/%s" % m.group(1)):
                continue
            t.KafkaCluster(self.base_env, nodes=3, dir=os.path.join(self.parent, d)).stop()

    def start(self):
        os.makedirs(self.parent, exist_ok=True)
        self.cleanup_stale()
        subprocess.run(["rm", "-rf", self.dir], check=True)
        t0 = time.monotonic()
        self.kc = t.KafkaCluster(self.base_env, nodes=3, dir=self.dir, config=CLUSTER_CONFIG)
        self.kc.start()
        self.env = self.kc.env
        self.start_s = time.monotonic() - t0
        log("3-node Apache Kafka cluster up in %.1fs: %s" %
            (self.start_s, self.env["KAFKA_BOOTSTRAP_SERVERS"]))
        return self

    def stop(self):
        if self.kc:
            for k in list(self.frozen):
                self._signal(k, signal.SIGCONT)
            self.kc.stop()
            self.kc = None

    def node_bootstrap(self, k):
        return self.env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[k - 1]

    # -- node faults (each first checks that no node died on its own) -------------------------
    def pid(self, k):
        r = self.kc.sh("pid", self.dir, str(k), check_rc=False)
        return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None

    def node_log_tail(self, k, lines=15):
        try:
            with open(os.path.join(self.dir, "node-%d" % k, "kafka.log"), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self, h):
        """A node that is not running although no scenario stopped it crashed: a problem."""
        for k in NODES:
            if k not in self.down and self.pid(k) is None:
                h.problem("kafka node %d died without a planned kill; log tail:\n%s" %
                          (k, self.node_log_tail(k)))
                self.down.add(k)    # reported once; the next scenario starts it

    def kill(self, h, k):
        self.check(h)
        self.kc.kill(k)
        self.down.add(k)
        h.note("SIGKILL kafka node %d at %s" % (k, h.clock()))

    def stop_node(self, h, k):
        self.check(h)
        self.kc.stop_node(k)
        self.down.add(k)
        h.note("stopped kafka node %d (SIGTERM) at %s" % (k, h.clock()))

    def start_node(self, h, k, wait=True):
        self.kc.start_node(k, wait=wait)
        self.down.discard(k)
        h.note("started kafka node %d at %s" % (k, h.clock()))

    def _signal(self, k, sig):
        pid = self.pid(k)
        if pid is not None:
            os.kill(pid, sig)
        return pid

    def freeze(self, h, k):
        self.check(h)
        t.check(self._signal(k, signal.SIGSTOP) is not None, "node %d is not running" % k)
        self.frozen.add(k)
        h.note("SIGSTOP kafka node %d at %s" % (k, h.clock()))

    def thaw(self, h, k):
        self._signal(k, signal.SIGCONT)
        self.frozen.discard(k)
        h.note("SIGCONT kafka node %d at %s" % (k, h.clock()))

    # -- metadata -----------------------------------------------------------------------------
    def metadata(self, topic=None, avoid=()):
        """Cluster metadata from a live node other than `avoid` (a frozen node would hang the
        request)."""
        nodes = [k for k in NODES if k not in avoid and k not in self.down and
                 k not in self.frozen] or list(NODES)
        last = None
        for _ in range(3):
            for k in nodes:
                try:
                    return _admin(self.node_bootstrap(k)).list_topics(topic, timeout=5)
                except Exception as e:  # noqa: BLE001 - that node may be restarting
                    last = e
            time.sleep(0.5)
        raise t.TestFailure("no metadata from nodes %s: %r" % (nodes, last))

    def leaders(self, topic, avoid=()):
        md = self.metadata(topic, avoid)
        return {p: pm.leader for p, pm in md.topics[topic].partitions.items()}

    def busiest_leader(self, topic):
        """The node leading the most partitions of topic (ties: the lowest id)."""
        counts = {k: 0 for k in NODES}
        for leader in self.leaders(topic).values():
            if leader in counts:
                counts[leader] += 1
        return max(NODES, key=lambda k: (counts[k], -k))

    def coordinator(self, group):
        """The node coordinating a consumer group: the leader of its __consumer_offsets
        partition (abs(hashCode) % offsets.topic.num.partitions, 12 in kafka.sh)."""
        md = self.metadata("__consumer_offsets")
        parts = md.topics["__consumer_offsets"].partitions
        p = abs(_java_hash(group)) % len(parts)
        return parts[p].leader

    def wait_leaders_off(self, topic, k, timeout=45.0):
        """Waits until no partition of topic is led by node k (the controller fenced it and
        elected other leaders); returns the seconds it took."""
        t0 = time.monotonic()
        t.wait_for(lambda: all(ld not in (k, -1) for ld in
                               self.leaders(topic, avoid=(k,)).values()),
                   timeout, interval=0.25,
                   msg="partitions of %s led by nodes other than %d" % (topic, k))
        return time.monotonic() - t0

    def wait_isr_full(self, topic, timeout=90.0):
        """Waits until every partition of topic has a leader and all three replicas in sync."""
        def full():
            md = self.metadata(topic)
            return all(pm.leader > 0 and len(pm.isrs) == len(NODES)
                       for pm in md.topics[topic].partitions.values())
        t0 = time.monotonic()
        t.wait_for(full, timeout, interval=0.3, msg="every replica of %s in sync" % topic)
        return time.monotonic() - t0

    def wait_serving(self, timeout=120.0):
        """Waits until every node answers metadata itself and lists all three nodes."""
        def serving():
            for k in NODES:
                md = _admin(self.node_bootstrap(k)).list_topics(timeout=3)
                if sorted(md.brokers) != list(NODES):
                    return False
            return True
        t.wait_for(serving, timeout, interval=0.5, msg="all three kafka nodes serving")

    def start_down(self, h, nodes):
        """Starts nodes that are down, together (two stopped controllers need each other for a
        quorum), and waits until every node serves again."""
        for k in nodes:
            self.start_node(h, k, wait=False)
        self.wait_serving()

    # -- between scenarios --------------------------------------------------------------------
    def resume(self, h):
        """Resumes nodes the scenario left frozen (before the check reads the topic), and checks
        that no node crashed. Nodes left down stay down until the next scenario needs them."""
        self.check(h)
        for k in sorted(self.frozen):
            h.note("node %d was still frozen at the end: SIGCONT" % k)
            self.thaw(h, k)

    def begin(self, h):
        """Starts the nodes an earlier scenario left down (a restart costs a JVM start, so the
        last scenario of a run does not pay it), then the topics."""
        if self.down or self.frozen:
            try:
                for k in sorted(self.frozen):
                    self.thaw(h, k)
                log("starting nodes %s, left down by the previous scenario" % sorted(self.down))
                self.start_down(h, sorted(self.down))
            except Exception as e:  # noqa: BLE001 - this scenario needs a healthy cluster
                log("the cluster did not recover (%r): starting a fresh one" % e)
                self.stop()
                self.down.clear()
                self.frozen.clear()
                self.start()
        return _Topics.begin(self, h)

    def end(self, h):
        self.resume(h)
        if len(self.down) < 2:       # with two nodes down the topics cannot be deleted
            self.delete_topics(h)


class Context:
    """What a harness process shares across its scenarios: the base env, the private Postgres,
    the mode, and where the scenarios that fault no broker run (`--kafka`: cluster, fixture or
    dev). Scenarios that fault brokers always get the private cluster; mock-only ones a dev
    broker."""

    def __init__(self, base_env, pg, full, kafka="cluster"):
        self.base_env = base_env
        self.pg = pg
        self.full = full
        self.kafka = kafka
        self._cluster = None
        self._fixture = None

    def backend(self, need):
        """need: "any" (faults no broker), "cluster" (faults the cluster's processes) or "dev"
        (a fault only the mock can inject)."""
        if need == "dev" or (need == "any" and self.kafka == "dev"):
            return Dev()
        if need == "any" and self.kafka == "fixture":
            if self._fixture is None:
                self._fixture = Fixture(self.base_env)
            return self._fixture
        if self._cluster is None:
            self._cluster = Cluster(self.base_env).start()
        return self._cluster

    def close(self):
        if self._cluster:
            self._cluster.stop()
